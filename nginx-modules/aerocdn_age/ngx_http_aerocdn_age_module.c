/*
 * aerocdn - ngx_http_aerocdn_age_module
 * SPDX-License-Identifier: Apache-2.0
 *
 * One variable, $aerocdn_age: seconds since the upstream answer was born, for
 *
 *     add_header Age $aerocdn_age always;
 *
 * The upstream (aerocdn edge, same pod, same clock) stamps each answer with
 * "X-Aerocdn-Born: <unix seconds>[.<fraction>]": when it fetched the object from, or last
 * revalidated it with, the origin.  nginx stores that header with a cached answer and re-parses
 * it as an upstream header on every cache hit, so the variable is now - born on hits, misses
 * and stale answers alike (0 if born is in the future).  Not found - add_header then sends
 * nothing - when there is no upstream answer or no well-formed stamp.  The rendered nginx.conf
 * hides the stamp itself (proxy_hide_header X-Aerocdn-Born).
 *
 * Replaces a Lua header filter that cost ~3 us of nginx CPU per L1 hit; this costs about
 * nothing (docs/benchmarks-edge.md).  Build: scripts/nginx-module.sh.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


static ngx_int_t ngx_http_aerocdn_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_age_add_variables(ngx_conf_t *cf);


static ngx_http_module_t  ngx_http_aerocdn_age_module_ctx = {
    ngx_http_aerocdn_age_add_variables,    /* preconfiguration */
    NULL,                                  /* postconfiguration */
    NULL, NULL,                            /* main conf */
    NULL, NULL,                            /* server conf */
    NULL, NULL                             /* location conf */
};


ngx_module_t  ngx_http_aerocdn_age_module = {
    NGX_MODULE_V1,
    &ngx_http_aerocdn_age_module_ctx,
    NULL,                                  /* no directives */
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_aerocdn_age_name = ngx_string("aerocdn_age");
static ngx_str_t  ngx_http_aerocdn_born_header = ngx_string("X-Aerocdn-Born");


static ngx_int_t
ngx_http_aerocdn_age_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char           *p, *last;
    time_t            born_sec;
    ngx_msec_int_t    born_ms, age_ms;
    ngx_uint_t        i, digits, frac;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_time_t       *tp;

    v->not_found = 1;

    if (r->upstream == NULL) {
        return NGX_OK;
    }

    /* the stamp among the upstream's headers (on a cache hit: the stored ones, re-parsed) */

    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && h[i].key.len == ngx_http_aerocdn_born_header.len
            && ngx_strncasecmp(h[i].key.data, ngx_http_aerocdn_born_header.data,
                               ngx_http_aerocdn_born_header.len) == 0)
        {
            break;
        }
    }

    /* <digits>[.<up to 3 digits>]: anything else is no stamp */

    p = h[i].value.data;
    last = p + h[i].value.len;
    born_sec = 0;
    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        if (++digits > 12) {
            return NGX_OK;
        }
        born_sec = born_sec * 10 + (*p++ - '0');
    }

    if (digits == 0) {
        return NGX_OK;
    }

    born_ms = 0;
    frac = 0;

    if (p < last && *p == '.') {
        p++;
        while (p < last && *p >= '0' && *p <= '9' && frac < 3) {
            born_ms = born_ms * 10 + (*p++ - '0');
            frac++;
        }
        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
        for ( /* void */ ; frac < 3; frac++) {
            born_ms *= 10;
        }
    }

    if (p != last) {
        return NGX_OK;
    }

    /* nginx's cached time (updated every event loop turn): whole seconds, rounded down */

    tp = ngx_timeofday();
    age_ms = (ngx_msec_int_t) (tp->sec - born_sec) * 1000 + (tp->msec - born_ms);

    v->data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(v->data, "%T", (time_t) (age_ms > 0 ? age_ms / 1000 : 0)) - v->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aerocdn_age_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_aerocdn_age_name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_aerocdn_age_variable;

    return NGX_OK;
}
