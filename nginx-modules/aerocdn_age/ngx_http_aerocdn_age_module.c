/*
 * aerocdn - ngx_http_aerocdn_age_module
 * SPDX-License-Identifier: Apache-2.0
 *
 * What aerocdn's nginx adds to every answer and every log line, in C rather than in
 * add_header, map and $http_* (each of those costs an L1 hit more than this does;
 * docs/benchmarks-edge.md, "instructions per L1 hit").
 *
 * One upstream header, "X-Aerocdn-Born: <stamp> <tier>": the upstream (aerocdn edge, same pod,
 * same clock) stamps each answer with when it fetched the object from, or last revalidated it
 * with, the origin (<unix seconds>[.<fraction>], less the Age the origin's answer came with),
 * or "-" for an answer with no stamp (not stored), then a space and the tier that answered.
 * nginx stores that header with a cached answer and re-parses it as an upstream header on
 * every cache hit.  One header, not two: every stored header line is parsed again on every L1
 * hit.  The rendered nginx.conf hides the header (proxy_hide_header X-Aerocdn-Born).
 *
 *     aerocdn_response_headers "1.1 aerocdn";    (location)  on every answer of the main
 *         request, whatever its status (as add_header ... always):
 *           Age: now - born, whole seconds (0 if born is in the future), when the stamp is
 *                well-formed (RFC 9111 5.1; hits, misses and stale answers alike);
 *           X-Cache: $upstream_cache_status, when nginx's cache took part;
 *           Via: the directive's value.
 *     $aerocdn_age          the Age above (not found without a stamp)
 *     $aerocdn_edge_tier    the edge's tier (what follows the stamp: l2, origin, pass, ...)
 *     $aerocdn_tier         the tier that answered: nginx's own on an L1 answer (HIT l1,
 *                           STALE/UPDATING l1-stale, REVALIDATED l1-revalidated), else
 *                           $aerocdn_edge_tier
 *     $aerocdn_accept_encoding  the request's Accept-Encoding (the first, as
 *                           $http_accept_encoding: nginx's own slot, not a scan of every
 *                           request header)
 *
 * Replaces a Lua header filter that cost ~3 us of nginx CPU per L1 hit.
 * Build: scripts/nginx-module.sh.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct {
    ngx_str_t  via;                        /* aerocdn_response_headers; data NULL: unset */
} ngx_http_aerocdn_loc_conf_t;


static ngx_int_t ngx_http_aerocdn_age_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_edge_tier_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_tier_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_accept_encoding_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_aerocdn_age_add_variables(ngx_conf_t *cf);
static void *ngx_http_aerocdn_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_aerocdn_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static ngx_int_t ngx_http_aerocdn_filter_init(ngx_conf_t *cf);


static ngx_command_t  ngx_http_aerocdn_commands[] = {

    { ngx_string("aerocdn_response_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_aerocdn_loc_conf_t, via),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_aerocdn_age_module_ctx = {
    ngx_http_aerocdn_age_add_variables,    /* preconfiguration */
    ngx_http_aerocdn_filter_init,          /* postconfiguration */
    NULL, NULL,                            /* main conf */
    NULL, NULL,                            /* server conf */
    ngx_http_aerocdn_create_loc_conf,      /* create location configuration */
    ngx_http_aerocdn_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_aerocdn_age_module = {
    NGX_MODULE_V1,
    &ngx_http_aerocdn_age_module_ctx,
    ngx_http_aerocdn_commands,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static ngx_str_t   ngx_http_aerocdn_born_lc = ngx_string("x-aerocdn-born");
static ngx_uint_t  ngx_http_aerocdn_born_hash;    /* ngx_hash_key_lc of the name */


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

        /* the proxy module hashes and lowercases each header name as it parses it (the
         * hash is ngx_hash_key_lc's): one compare for most headers */

        if (h[i].hash == ngx_http_aerocdn_born_hash
            && h[i].key.len == ngx_http_aerocdn_born_lc.len
            && (h[i].lowcase_key != NULL
                ? ngx_strncmp(h[i].lowcase_key, ngx_http_aerocdn_born_lc.data,
                              ngx_http_aerocdn_born_lc.len)
                : ngx_strncasecmp(h[i].key.data, ngx_http_aerocdn_born_lc.data,
                                  ngx_http_aerocdn_born_lc.len)) == 0)
        {
            return &h[i].value;
        }
    }
}


/* n in decimal into buf (NGX_TIME_T_LEN bytes; ngx_sprintf's "%T" costs ten times this);
 * its length */

static size_t
ngx_http_aerocdn_digits(u_char *buf, ngx_uint_t n)
{
    u_char   tmp[NGX_INT64_LEN];
    u_char  *p, *end;

    end = tmp + sizeof(tmp);
    p = end;

    do {
        *--p = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n && p > tmp);

    return ngx_cpymem(buf, p, end - p) - buf;
}


/* now - born in whole seconds (0 if born is in the future) into buf (NGX_TIME_T_LEN bytes);
 * its length, or 0 without a well-formed stamp. */

static size_t
ngx_http_aerocdn_age(ngx_http_request_t *r, u_char *buf)
{
    u_char           *p, *last;
    time_t            born_sec;
    ngx_msec_int_t    born_ms, age_ms;
    ngx_uint_t        digits, frac;
    ngx_str_t        *value;
    ngx_time_t       *tp;

    value = ngx_http_aerocdn_born(r);
    if (value == NULL) {
        return 0;
    }

    /* <digits>[.<up to 3 digits>], then the end or a space (the tier follows): anything
     * else is no stamp */

    p = value->data;
    last = p + value->len;
    born_sec = 0;
    digits = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        if (++digits > 12) {
            return 0;
        }
        born_sec = born_sec * 10 + (*p++ - '0');
    }

    if (digits == 0) {
        return 0;
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
        return 0;
    }

    /* nginx's cached time (updated every event loop turn): whole seconds, rounded down */

    tp = ngx_timeofday();
    age_ms = (ngx_msec_int_t) (tp->sec - born_sec) * 1000 + (tp->msec - born_ms);

    return ngx_http_aerocdn_digits(buf, age_ms > 0 ? (ngx_uint_t) (age_ms / 1000) : 0);
}


static ngx_int_t
ngx_http_aerocdn_age_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char  *buf;
    size_t   len;

    v->not_found = 1;

    buf = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    len = ngx_http_aerocdn_age(r, buf);
    if (len == 0) {
        return NGX_OK;
    }

    v->data = buf;
    v->len = len;
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
ngx_http_aerocdn_tier_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    static ngx_str_t  l1 = ngx_string("l1");
    static ngx_str_t  l1_stale = ngx_string("l1-stale");
    static ngx_str_t  l1_revalidated = ngx_string("l1-revalidated");
    ngx_str_t        *tier;

    tier = NULL;

    if (r->upstream != NULL) {
        switch (r->upstream->cache_status) {
        case NGX_HTTP_CACHE_HIT:
            tier = &l1;
            break;
        case NGX_HTTP_CACHE_STALE:
        case NGX_HTTP_CACHE_UPDATING:
            tier = &l1_stale;
            break;
        case NGX_HTTP_CACHE_REVALIDATED:
            tier = &l1_revalidated;
            break;
        }
    }

    if (tier == NULL) {
        return ngx_http_aerocdn_edge_tier_variable(r, v, data);
    }

    v->data = tier->data;
    v->len = tier->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aerocdn_accept_encoding_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_table_elt_t  *h;

    h = r->headers_in.accept_encoding;

    if (h == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = h->value.data;
    v->len = h->value.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aerocdn_push_header(ngx_http_request_t *r, ngx_str_t *key, u_char *data,
    size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value.data = data;
    h->value.len = len;
    h->lowcase_key = NULL;

    return NGX_OK;
}


static ngx_int_t
ngx_http_aerocdn_header_filter(ngx_http_request_t *r)
{
    static ngx_str_t              age = ngx_string("Age");
    static ngx_str_t              x_cache = ngx_string("X-Cache");
    static ngx_str_t              via = ngx_string("Via");
    u_char                       *buf;
    size_t                        len;
    ngx_str_t                    *status;
    ngx_http_aerocdn_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_aerocdn_age_module);

    if (alcf->via.data == NULL || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    buf = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    len = ngx_http_aerocdn_age(r, buf);
    if (len && ngx_http_aerocdn_push_header(r, &age, buf, len) != NGX_OK) {
        return NGX_ERROR;
    }

    if (r->upstream != NULL && r->upstream->cache_status != 0) {
        status = &ngx_http_cache_status[r->upstream->cache_status - 1];
        if (ngx_http_aerocdn_push_header(r, &x_cache, status->data, status->len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (alcf->via.len
        && ngx_http_aerocdn_push_header(r, &via, alcf->via.data, alcf->via.len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_aerocdn_age_add_variables(ngx_conf_t *cf)
{
    static struct {
        ngx_str_t                  name;
        ngx_http_get_variable_pt   handler;
    }  vars[] = {
        { ngx_string("aerocdn_age"), ngx_http_aerocdn_age_variable },
        { ngx_string("aerocdn_edge_tier"), ngx_http_aerocdn_edge_tier_variable },
        { ngx_string("aerocdn_tier"), ngx_http_aerocdn_tier_variable },
        { ngx_string("aerocdn_accept_encoding"), ngx_http_aerocdn_accept_encoding_variable },
    };
    ngx_uint_t            i;
    ngx_http_variable_t  *var;

    for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        var = ngx_http_add_variable(cf, &vars[i].name, NGX_HTTP_VAR_NOCACHEABLE);
        if (var == NULL) {
            return NGX_ERROR;
        }
        var->get_handler = vars[i].handler;
    }

    return NGX_OK;
}


static void *
ngx_http_aerocdn_create_loc_conf(ngx_conf_t *cf)
{
    /* ngx_pcalloc: via is { 0, NULL }, unset */
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_aerocdn_loc_conf_t));
}


static char *
ngx_http_aerocdn_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_aerocdn_loc_conf_t  *prev = parent;
    ngx_http_aerocdn_loc_conf_t  *conf = child;

    if (conf->via.data == NULL) {
        conf->via = prev->via;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_aerocdn_filter_init(ngx_conf_t *cf)
{
    ngx_http_aerocdn_born_hash = ngx_hash_key_lc(ngx_http_aerocdn_born_lc.data,
                                                 ngx_http_aerocdn_born_lc.len);

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_aerocdn_header_filter;

    return NGX_OK;
}
