/* Unit tests for fcgi/params: the request line and headers from FastCGI
 * parameters, as Caddy, nginx and Apache send them. */
#include <stdio.h>
#include <string.h>

#include "fcgi/params.h"
#include "tests/unit/tap.h"

/* The value of header name in req, or NULL. */
static const char *header(const engine_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

int main(void)
{
    rl_pool *pool = rl_pool_new();
    engine_request req = {.pool = pool};

    /* The usual case: REQUEST_URI is the raw URI, path and query split at
     * the first '?', the rest of the query kept as it came. */
    char *caddy[] = {"REQUEST_METHOD=POST",
                     "REQUEST_URI=/v1beta/models/g:streamGenerateContent?alt=sse&key=a?b",
                     "SCRIPT_NAME=/ignored",
                     "PATH_INFO=/ignored",
                     "QUERY_STRING=ignored",
                     "CONTENT_TYPE=application/json",
                     "CONTENT_LENGTH=12",
                     "HTTP_AUTHORIZATION=Bearer sk-1=2",
                     "HTTP_X_RELAY_TTL=60",
                     "HTTP_ANTHROPIC_BETA=a,b",
                     "SERVER_NAME=relay",
                     NULL};
    is_int(params_parse(caddy, &req), 0, "parses");
    is_str(req.method, "POST", "method");
    is_str(req.path, "/v1beta/models/g:streamGenerateContent", "path: REQUEST_URI before '?'");
    is_str(req.query, "alt=sse&key=a?b", "query: everything after the first '?'");
    is_int(req.nheaders, 4, "HTTP_* and CONTENT_TYPE only");
    is_str(header(&req, "content-type"), "application/json", "CONTENT_TYPE");
    is_str(header(&req, "authorization"), "Bearer sk-1=2", "a value keeps its '='");
    is_str(header(&req, "x-relay-ttl"), "60", "underscores become dashes, lower case");
    is_str(header(&req, "anthropic-beta"), "a,b", "anthropic-beta");
    is_str(header(&req, "content-length"), NULL, "CONTENT_LENGTH is not a header");

    /* Without REQUEST_URI (a bare CGI-style front): SCRIPT_NAME +
     * PATH_INFO and QUERY_STRING; no method means GET. */
    engine_request cgi_req = {.pool = pool};
    char *cgi[] = {"SCRIPT_NAME=/relay", "PATH_INFO=/health", "QUERY_STRING=a=1", NULL};
    is_int(params_parse(cgi, &cgi_req), 0, "parses without REQUEST_URI");
    is_str(cgi_req.method, "GET", "no REQUEST_METHOD: GET");
    is_str(cgi_req.path, "/relay/health", "SCRIPT_NAME + PATH_INFO");
    is_str(cgi_req.query, "a=1", "QUERY_STRING");
    is_int(cgi_req.nheaders, 0, "no headers");

    /* Degenerate parameters: no URI at all, a parameter without '=', an
     * empty header name, a name that only starts like REQUEST_URI. */
    engine_request odd_req = {.pool = pool};
    char *odd[] = {"HTTP_", "HTTP_=x", "REQUEST_URIX=/no", "NOEQUALS", "HTTP_X=", NULL};
    is_int(params_parse(odd, &odd_req), 0, "parses odd parameters");
    is_str(odd_req.path, "", "no URI: an empty path (routing answers 404)");
    is_str(odd_req.query, "", "and an empty query");
    is_int(odd_req.nheaders, 2, "HTTP_=x and HTTP_X= are headers; HTTP_ without '=' is not");
    is_str(header(&odd_req, ""), "x", "an empty name kept as empty");
    is_str(header(&odd_req, "x"), "", "an empty value kept as empty");

    rl_pool_free(pool);
    return tap_done();
}
