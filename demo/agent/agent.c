/*
 * demo/agent: a conversation-memory agent for the ate wasm sandbox.
 *
 *   POST /messages        body = one message; stored in memory       -> {"count":N}
 *   GET  /messages        every message, oldest first, one per line
 *   GET  /summary         a summary of the conversation: asks the model endpoint named by
 *                         MODEL_URL (through the egress host call, so only when the
 *                         template allows that host) and falls back to a local summary
 *   PUT  /kv/KEY          body = value                               -> stored
 *   GET  /kv/KEY          the value, or 404
 *   GET  /whoami          the actor's atespace/id, read from the host on each request
 *
 * All state lives in linear memory, so a snapshot of the actor carries the whole
 * conversation. Each request writes one log line to stdout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("ate"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("response_start") int32_t ate_response_start(int32_t status, const char *headers, int32_t len);
IMPORT("response_write") int32_t ate_response_write(const char *buf, int32_t len);
IMPORT("http_request") int32_t ate_http_request(const char *req, int32_t len);
IMPORT("http_response") int32_t ate_http_response(char *buf, int32_t cap);
IMPORT("actor_id") int32_t ate_actor_id(char *buf, int32_t cap);
IMPORT("atespace") int32_t ate_atespace(char *buf, int32_t cap);

/* ---- growable byte buffer ---- */
typedef struct { char *data; size_t len, cap; } buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}
static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

/* ---- state: the conversation and a key-value map ---- */
static buf_t *messages;
static size_t n_messages, cap_messages;
typedef struct { char *key; buf_t value; } kv_t;
static kv_t *kvs;
static size_t n_kvs, cap_kvs;

static void add_message(const char *s, size_t n) {
    if (n_messages == cap_messages) {
        cap_messages = cap_messages ? cap_messages * 2 : 16;
        messages = realloc(messages, cap_messages * sizeof *messages);
        if (!messages) abort();
    }
    messages[n_messages] = (buf_t){0};
    buf_put(&messages[n_messages], s, n);
    n_messages++;
}

static kv_t *kv_find(const char *key, int create) {
    for (size_t i = 0; i < n_kvs; i++)
        if (strcmp(kvs[i].key, key) == 0) return &kvs[i];
    if (!create) return NULL;
    if (n_kvs == cap_kvs) {
        cap_kvs = cap_kvs ? cap_kvs * 2 : 16;
        kvs = realloc(kvs, cap_kvs * sizeof *kvs);
        if (!kvs) abort();
    }
    kvs[n_kvs] = (kv_t){.key = strdup(key)};
    return &kvs[n_kvs++];
}

/* ---- the request buffer the host writes into ---- */
static char *request;
static size_t request_cap;

EXPORT("ate_alloc") char *ate_alloc(int32_t len) {
    if ((size_t)len + 1 > request_cap) {
        free(request);
        request_cap = (size_t)len + 1;
        request = malloc(request_cap);
        if (!request) abort();
    }
    return request;
}

static void respond(int status, const char *content_type, const char *body, size_t len) {
    char headers[128];
    int n = snprintf(headers, sizeof headers, "content-type: %s\r\n", content_type);
    ate_response_start(status, headers, n);
    if (len) ate_response_write(body, (int32_t)len);
}
static void respond_text(int status, const char *text) {
    respond(status, "text/plain", text, strlen(text));
}

static size_t count_words(void) {
    size_t words = 0;
    for (size_t i = 0; i < n_messages; i++) {
        int in = 0;
        for (size_t j = 0; j < messages[i].len; j++) {
            int space = messages[i].data[j] == ' ' || messages[i].data[j] == '\n';
            if (!space && !in) words++;
            in = !space;
        }
    }
    return words;
}

/* Asks the model at MODEL_URL (http://host[:port]/path) for a summary. Returns 1 and fills
 * `out` with the model's answer on a 2xx reply, 0 otherwise (`why` says what happened). */
static int model_summary(buf_t *out, char *why, size_t why_len) {
    const char *url = getenv("MODEL_URL");
    if (!url || !*url) { snprintf(why, why_len, "no MODEL_URL"); return 0; }
    buf_t body = {0};
    buf_str(&body, "Summarize this conversation:\n");
    for (size_t i = 0; i < n_messages; i++) { buf_str(&body, messages[i].data); buf_str(&body, "\n"); }
    buf_t req = {0};
    char line[512];
    snprintf(line, sizeof line, "POST %s HTTP/1.1\r\ncontent-type: text/plain\r\n\r\n", url);
    buf_str(&req, line);
    buf_put(&req, body.data, body.len);
    int32_t n = ate_http_request(req.data, (int32_t)req.len);
    free(body.data);
    free(req.data);
    if (n < 0) {
        snprintf(why, why_len, n == -1 ? "egress denied" : n == -2 ? "bad request" : "model unreachable");
        return 0;
    }
    char *resp = malloc((size_t)n + 1);
    if (!resp) abort();
    int32_t got = ate_http_response(resp, n);
    resp[got > 0 ? got : 0] = 0;
    int ok = strncmp(resp, "HTTP/1.1 2", 10) == 0 || strncmp(resp, "HTTP/1.0 2", 10) == 0;
    char *sep = strstr(resp, "\r\n\r\n");
    if (ok && sep) buf_str(out, sep + 4);
    else snprintf(why, why_len, "model answered %.12s", resp);
    free(resp);
    return ok && sep;
}

static void summary(void) {
    buf_t out = {0};
    char why[64];
    if (model_summary(&out, why, sizeof why)) {
        respond(200, "text/plain", out.data, out.len);
    } else {
        char text[256];
        int n = snprintf(text, sizeof text, "%zu messages, %zu words; last: %s (local summary: %s)",
                         n_messages, count_words(), n_messages ? messages[n_messages - 1].data : "-", why);
        respond(200, "text/plain", text, (size_t)n);
    }
    free(out.data);
}

EXPORT("ate_handle") int32_t ate_handle(char *req, int32_t len) {
    req[len] = 0;
    char *head_end = strstr(req, "\r\n\r\n");
    if (!head_end) { respond_text(400, "malformed request\n"); return 0; }
    char *body = head_end + 4;
    size_t body_len = (size_t)(req + len - body);
    char method[8] = {0}, path[256] = {0};
    sscanf(req, "%7s %255s", method, path);
    char *q = strchr(path, '?');
    if (q) *q = 0;
    printf("agent: %s %s (%zu bytes)\n", method, path, body_len);
    fflush(stdout);

    if (strcmp(path, "/messages") == 0 && strcmp(method, "POST") == 0) {
        add_message(body, body_len);
        char out[32];
        int n = snprintf(out, sizeof out, "{\"count\":%zu}", n_messages);
        respond(200, "application/json", out, (size_t)n);
    } else if (strcmp(path, "/messages") == 0) {
        buf_t out = {0};
        for (size_t i = 0; i < n_messages; i++) { buf_str(&out, messages[i].data); buf_str(&out, "\n"); }
        respond(200, "text/plain", out.data ? out.data : "", out.len);
        free(out.data);
    } else if (strcmp(path, "/summary") == 0) {
        summary();
    } else if (strncmp(path, "/kv/", 4) == 0 && path[4]) {
        if (strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0) {
            kv_t *kv = kv_find(path + 4, 1);
            kv->value.len = 0;
            buf_put(&kv->value, body, body_len);
            respond_text(200, "stored\n");
        } else {
            kv_t *kv = kv_find(path + 4, 0);
            if (kv) respond(200, "text/plain", kv->value.data, kv->value.len);
            else respond_text(404, "no such key\n");
        }
    } else if (strcmp(path, "/whoami") == 0) {
        char id[128], space[128], out[260];
        int a = ate_atespace(space, sizeof space - 1), b = ate_actor_id(id, sizeof id - 1);
        space[a < 127 ? a : 127] = 0;
        id[b < 127 ? b : 127] = 0;
        int n = snprintf(out, sizeof out, "%s/%s", space, id);
        respond(200, "text/plain", out, (size_t)n);
    } else {
        respond_text(404, "unknown path\n");
    }
    return 0;
}
