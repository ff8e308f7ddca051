"""aerocdn: a Kubernetes operator for Aerospike-backed CDN edges."""

__version__ = "0.1.0"
