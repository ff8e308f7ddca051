// CoreDNS with only the plugins the local cluster's DNS needs: the cluster's Services and
// pods by name (kubernetes), with its health and readiness endpoints. There is no `forward`:
// nothing outside the cluster is resolved, so no query leaves the namespaces of the run.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// Execution order, as in CoreDNS's own list (core/dnsserver/zdirectives.go).
	dnsserver.Directives = []string{"bind", "ready", "health", "errors", "log", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
