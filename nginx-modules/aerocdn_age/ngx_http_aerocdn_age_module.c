/*
 * aerocdn - ngx_http_aerocdn_age_module
 * SPDX-License-Identifier: Apache-2.0
 *
 * Two variables from one upstream header, "X-Aerocdn-Born: <stamp> <tier>":
 *
 *     add_header Age $aerocdn_age always;      now - born, in whole seconds
 *     ... "tier":"$aerocdn_edge_tier" ...       the edge's tier (l2, origin, pass, ...)
 *
 * The upstream (aerocdn edge, same pod, same clock) stamps each answer with when it fetched
 * the object from, or last revalidated it with, the origin (<unix seconds>[.<fraction>], less
 * the Age the origin's answer came with), or "-" for an answer with no stamp (not stored),
 * then a space and the tier that answered.  nginx stores that header with a cached answer and
 * re-parses it as an upstream header on every cache hit, so $aerocdn_age is now - born on
 * hits, misses and stale answers alike (0 if born is in the future); not found - add_header
 * then sends nothing - without an upstream answer or a well-formed stamp.  One header, not
 * two: every stored header line is parsed again on every L1 hit.  The rendered nginx.conf
 * hides the header (proxy_hide_header X-Aerocdn-Born).
 *
 * Replaces a Lua header filter that cost ~3 us of nginx CPU per L1 hit; this costs about
 * nothing (docs/benchmarks-edge.md).  Build: scripts/nginx-module.sh.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


static ngx_int_t ngx_http_aerocdn_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_edge_tier_variable(ngx_http_request_t *r,
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
static ngx_str_t  ngx_http_aerocdn_edge_tier_name = ngx_string("aerocdn_edge_tier");
static ngx_str_t  ngx_http_aerocdn_born_header = ngx_string("X-Aerocdn-Born");


/* The header's value among the upstream's headers (on a cache hit: the stored ones,
 * re-parsed), or NULL. */

static ngx_str_t *
ngx_http_aerocdn_born(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->upstream == NULL) {
        return NULL;
    }

    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
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
            return &h[i].value;
        }
    }
}


static ngx_int_t
ngx_http_aerocdn_age_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char           *p, *last;
    time_t            born_sec;
    ngx_msec_int_t    born_ms, age_ms;
    ngx_uint_t        digits, frac;
    ngx_str_t        *value;
    ngx_time_t       *tp;

    v->not_found = 1;

    value = ngx_http_aerocdn_born(r);
    if (value == NULL) {
        return NGX_OK;
    }

    /* <digits>[.<up to 3 digits>], then the end or a space (the tier follows): anything
     * else is no stamp */

    p = value->data;
    last = p + value->len;
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

    if (p != last && *p != ' ') {
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


/* What follows the first space of the header: the tier that answered (empty if none). */

static ngx_int_t
ngx_http_aerocdn_edge_tier_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char     *p, *last;
    ngx_str_t  *value;

    v->not_found = 1;

    value = ngx_http_aerocdn_born(r);
    if (value == NULL) {
        return NGX_OK;
    }

    p = value->data;
    last = p + value->len;

    while (p < last && *p != ' ') {
        p++;
    }

    while (p < last && *p == ' ') {
        p++;
    }

    v->data = p;
    v->len = last - p;
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

    var = ngx_http_add_variable(cf, &ngx_http_aerocdn_edge_tier_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_aerocdn_edge_tier_variable;

    return NGX_OK;
}
