/* top.c - sluicectl top (see top.h): samples of `show stats json`, rates
 * from successive samples, one frame per interval drawn with plain ANSI
 * escapes on the alternate screen of a raw-mode terminal. */
#include "sluice/top.h"

#include "sluice/json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *const sort_names[TOP_SORT_COUNT] = {
    [TOP_SORT_SESSIONS] = "sessions", [TOP_SORT_NEW] = "new/s", [TOP_SORT_BYTES] = "bytes/s",
    [TOP_SORT_ERRORS] = "errors/s",   [TOP_SORT_P99] = "p99",   [TOP_SORT_NAME] = "name",
};

const char *top_sort_str(enum top_sort s)
{
    return (unsigned)s < TOP_SORT_COUNT ? sort_names[s] : "?";
}

int top_sort_key(int ch)
{
    switch (ch) {
    case 's':
        return TOP_SORT_SESSIONS;
    case 'n':
        return TOP_SORT_NEW;
    case 'b':
        return TOP_SORT_BYTES;
    case 'e':
        return TOP_SORT_ERRORS;
    case 'p':
        return TOP_SORT_P99;
    case 'a':
        return TOP_SORT_NAME;
    default:
        return -1;
    }
}

/* Copy a name for the terminal: control characters become '?'. */
static void copy_name(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[i] = '\0';
}

static double p99_of(const struct json_value *obj)
{
    const struct json_value *c = json_path(obj, "latency_us.connect");
    if (c == NULL || json_num(json_get(c, "count"), 0) <= 0)
        return -1;
    return json_num(json_get(c, "p99"), -1);
}

static double pool_queue(const struct json_value *pools, const char *name)
{
    if (name == NULL || pools == NULL || pools->type != JSON_ARRAY)
        return -1;
    for (const struct json_value *p = pools->child; p != NULL; p = p->next)
        if (strcmp(json_str(json_get(p, "name"), ""), name) == 0)
            return json_num(json_get(p, "queue"), -1);
    return -1;
}

bool top_sample_parse(struct top_sample *s, const char *json, size_t len, double t, char *err,
                      size_t errlen)
{
    memset(s, 0, sizeof(*s));
    struct json_doc *doc = json_parse(json, len, err, errlen);
    if (doc == NULL)
        return false;
    const struct json_value *root = json_root(doc);
    const struct json_value *info = json_get(root, "info");
    const struct json_value *ls = json_get(root, "listeners");
    const struct json_value *ss = json_get(root, "servers");
    const struct json_value *pools = json_get(root, "pools");
    if (info == NULL || ls == NULL || ls->type != JSON_ARRAY || ss == NULL ||
        ss->type != JSON_ARRAY) {
        snprintf(err, errlen, "not a sluice stats document (no info, listeners, servers)");
        json_free(doc);
        return false;
    }
    s->t = t;
    copy_name(s->version, sizeof(s->version), json_str(json_get(info, "version"), "?"));
    s->pid = json_int(json_get(info, "pid"), 0, LONG_MAX, 0);
    s->uptime = json_num(json_get(info, "uptime_seconds"), 0);
    s->workers = (int)json_int(json_get(info, "workers"), 0, INT_MAX, 0);
    s->sessions_active = json_num(json_get(info, "sessions_active"), 0);
    s->sessions_total = json_num(json_get(info, "sessions_total"), 0);
    size_t n = ls->len + ss->len;
    s->rows = calloc(n ? n : 1, sizeof(*s->rows));
    if (s->rows == NULL) {
        snprintf(err, errlen, "out of memory");
        json_free(doc);
        return false;
    }
    for (const struct json_value *l = ls->child; l != NULL; l = l->next) {
        struct top_row *r = &s->rows[s->nrows++];
        r->kind = TOP_LISTENER;
        copy_name(r->name, sizeof(r->name), json_str(json_get(l, "name"), "?"));
        strcpy(r->state, "-");
        r->active = json_num(json_get(l, "active"), 0);
        r->new_total = json_num(json_get(l, "accepted"), 0);
        r->in_total = json_num(json_get(l, "bytes_in"), 0);
        r->out_total = json_num(json_get(l, "bytes_out"), 0);
        r->err_total = json_num(json_get(l, "no_backend"), 0);
        r->queue = pool_queue(pools, json_str(json_get(l, "pool"), NULL));
        r->p99_us = p99_of(l);
    }
    for (const struct json_value *v = ss->child; v != NULL; v = v->next) {
        struct top_row *r = &s->rows[s->nrows++];
        r->kind = TOP_SERVER;
        char full[sizeof(r->name)];
        snprintf(full, sizeof(full), "%s/%s", json_str(json_get(v, "pool"), "?"),
                 json_str(json_get(v, "name"), "?"));
        copy_name(r->name, sizeof(r->name), full);
        copy_name(r->state, sizeof(r->state), json_str(json_get(v, "state"), "?"));
        r->active = json_num(json_get(v, "active"), 0);
        r->new_total = json_num(json_get(v, "sessions"), 0);
        /* bytes_in is what the server sent: out to the client. */
        r->in_total = json_num(json_get(v, "bytes_out"), 0);
        r->out_total = json_num(json_get(v, "bytes_in"), 0);
        r->err_total =
            json_num(json_get(v, "connect_failures"), 0) + json_num(json_get(v, "local_errors"), 0);
        r->queue = pool_queue(pools, json_str(json_get(v, "pool"), NULL));
        r->p99_us = p99_of(v);
    }
    json_free(doc);
    return true;
}

void top_sample_free(struct top_sample *s)
{
    free(s->rows);
    s->rows = NULL;
    s->nrows = 0;
}

static double rate(double cur, double prev, double dt)
{
    return cur >= prev ? (cur - prev) / dt : cur / dt;
}

void top_rates(struct top_sample *cur, const struct top_sample *prev)
{
    double dt = prev ? cur->t - prev->t : 0;
    for (int i = 0; i < cur->nrows; i++) {
        struct top_row *r = &cur->rows[i];
        r->rated = false;
        if (prev == NULL || dt <= 0)
            continue;
        for (int j = 0; j < prev->nrows; j++) {
            const struct top_row *p = &prev->rows[j];
            if (p->kind != r->kind || strcmp(p->name, r->name) != 0)
                continue;
            r->rated = true;
            r->new_s = rate(r->new_total, p->new_total, dt);
            r->in_s = rate(r->in_total, p->in_total, dt);
            r->out_s = rate(r->out_total, p->out_total, dt);
            r->err_s = rate(r->err_total, p->err_total, dt);
            break;
        }
    }
}

/* The value a row is sorted by (larger first); unknown sorts last. */
static double sort_value(const struct top_row *r, enum top_sort key)
{
    switch (key) {
    case TOP_SORT_SESSIONS:
        return r->active;
    case TOP_SORT_NEW:
        return r->rated ? r->new_s : -1;
    case TOP_SORT_BYTES:
        return r->rated ? r->in_s + r->out_s : -1;
    case TOP_SORT_ERRORS:
        return r->rated ? r->err_s : -1;
    case TOP_SORT_P99:
        return r->p99_us;
    default:
        return 0;
    }
}

static int row_cmp(const void *a, const void *b, void *arg)
{
    const struct top_row *x = a, *y = b;
    enum top_sort key = *(const enum top_sort *)arg;
    if (x->kind != y->kind)
        return x->kind == TOP_LISTENER ? -1 : 1;
    if (key != TOP_SORT_NAME) {
        double vx = sort_value(x, key), vy = sort_value(y, key);
        if (vx != vy)
            return vx > vy ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

void top_sort_rows(struct top_sample *s, enum top_sort key)
{
    if (s->nrows > 1)
        qsort_r(s->rows, (size_t)s->nrows, sizeof(*s->rows), row_cmp, &key);
}

/* 1234 -> "1234", 12345 -> "12.3K", ...; "-" when not known. */
static void fmt_qty(char *buf, size_t cap, double v, bool known)
{
    static const char units[] = "KMGTPE";
    if (!known || v < 0) {
        snprintf(buf, cap, "-");
        return;
    }
    if (v < 10000) {
        snprintf(buf, cap, v < 10 && v != floor(v) ? "%.1f" : "%.0f", v);
        return;
    }
    int u = -1;
    while (v >= 1000 && u < 5) {
        v /= 1000;
        u++;
    }
    snprintf(buf, cap, "%.1f%c", v, units[u]);
}

static void fmt_us(char *buf, size_t cap, double us)
{
    if (us < 0)
        snprintf(buf, cap, "-");
    else if (us < 1000)
        snprintf(buf, cap, "%.0fus", us);
    else if (us < 1e6)
        snprintf(buf, cap, "%.1fms", us / 1000);
    else
        snprintf(buf, cap, "%.1fs", us / 1e6);
}

static void fmt_uptime(char *buf, size_t cap, double s)
{
    /* s comes from the stats document: clamp before converting (a huge or
     * negative number must not reach the cast). */
    long t = s >= 1e12 ? 1000000000000L : s > 0 ? (long)s : 0;
    if (t >= 86400)
        snprintf(buf, cap, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
    else if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

/* Append line cut to width display columns (UTF-8 aware), then "\n". */
static void put_line(struct strbuf *out, const char *line, int width)
{
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == ' ')
        n--;
    if (width > 0) {
        int cols = 0;
        size_t i = 0;
        for (; i < n; i++) {
            if (((unsigned char)line[i] & 0xC0) == 0x80)
                continue; /* continuation byte */
            if (cols == width)
                break;
            cols++;
        }
        n = i;
    }
    strbuf_append(out, line, n);
    strbuf_puts(out, "\n");
}

#define NAME_MIN 12
#define NAME_MAX_W 40

void top_render(const struct top_sample *s, enum top_sort key, double interval, const char *note,
                int width, int height, struct strbuf *out)
{
    char line[512], up[32];
    int lines = 0;
#define EMIT()                                                                                     \
    do {                                                                                           \
        if (height > 0 && lines >= height)                                                         \
            return;                                                                                \
        put_line(out, line, width);                                                                \
        lines++;                                                                                   \
    } while (0)
    fmt_uptime(up, sizeof(up), s->uptime);
    snprintf(line, sizeof(line),
             "sluice %s pid %ld up %s  workers %d  sessions %.0f active, %.0f total  every %gs",
             s->version, s->pid, up, s->workers, s->sessions_active, s->sessions_total, interval);
    EMIT();
    snprintf(line, sizeof(line), "sort: %s%s%s%s", top_sort_str(key),
             width > 0
                 ? "   keys: s sessions  n new/s  b bytes/s  e errors/s  p p99  a name  q quit"
                 : "",
             note ? "  ! " : "", note ? note : "");
    EMIT();
    int namew = NAME_MIN;
    for (int i = 0; i < s->nrows; i++) {
        int l = (int)strlen(s->rows[i].name);
        if (l > namew)
            namew = l < NAME_MAX_W ? l : NAME_MAX_W;
    }
    enum top_kind kinds[2] = {TOP_LISTENER, TOP_SERVER};
    for (int k = 0; k < 2; k++) {
        line[0] = '\0';
        EMIT();
        snprintf(line, sizeof(line), "%-*s %-9s %7s %7s %8s %8s %6s %6s %8s", namew,
                 kinds[k] == TOP_LISTENER ? "LISTENER" : "SERVER", "STATE", "ACTIVE", "NEW/S",
                 "IN/S", "OUT/S", "ERR/S", "QUEUE", "P99CONN");
        EMIT();
        for (int i = 0; i < s->nrows; i++) {
            const struct top_row *r = &s->rows[i];
            if (r->kind != kinds[k])
                continue;
            char act[16], nw[16], in[16], ou[16], er[16], q[16], p[16];
            fmt_qty(act, sizeof(act), r->active, true);
            fmt_qty(nw, sizeof(nw), r->new_s, r->rated);
            fmt_qty(in, sizeof(in), r->in_s, r->rated);
            fmt_qty(ou, sizeof(ou), r->out_s, r->rated);
            fmt_qty(er, sizeof(er), r->err_s, r->rated);
            fmt_qty(q, sizeof(q), r->queue, r->queue >= 0);
            fmt_us(p, sizeof(p), r->p99_us);
            char name[NAME_MAX_W + 1];
            size_t nl = strlen(r->name);
            memcpy(name, r->name, nl > NAME_MAX_W ? NAME_MAX_W : nl);
            name[nl > NAME_MAX_W ? NAME_MAX_W : nl] = '\0';
            if (nl > NAME_MAX_W)
                name[NAME_MAX_W - 1] = '+'; /* cut: marked */
            snprintf(line, sizeof(line), "%-*s %-9s %7s %7s %8s %8s %6s %6s %8s", namew, name,
                     r->state, act, nw, in, ou, er, q, p);
            EMIT();
        }
    }
#undef EMIT
}

/* ---- the terminal ---- */

static volatile sig_atomic_t got_stop, got_winch, got_tstp;
static struct termios saved_tio;
static bool tio_saved;

static void on_stop(int sig)
{
    got_stop = sig;
}

static void on_tstp(int sig)
{
    (void)sig;
    got_tstp = 1;
}

static void on_winch(int sig)
{
    (void)sig;
    got_winch = 1;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void term_restore(void)
{
    static const char leave[] = "\033[0m\033[?25h\033[?1049l";
    write_all(leave, sizeof(leave) - 1);
    if (tio_saved)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
}

static bool term_enter(void)
{
    if (tcgetattr(STDIN_FILENO, &saved_tio) < 0)
        return false;
    struct termios raw = saved_tio;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
        return false;
    tio_saved = true;
    static const char enter[] = "\033[?1049h\033[?25l\033[H\033[2J";
    write_all(enter, sizeof(enter) - 1);
    return true;
}

static void term_size(int *w, int *h)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        *w = ws.ws_col;
        *h = ws.ws_row;
    } else {
        *w = 80;
        *h = 24;
    }
}

/* Draw a frame: home, each line erased to its end, the rest cleared; the
 * first line in reverse video. Lines end in CR LF (raw mode keeps OPOST,
 * but CR LF does not depend on it). */
static void term_draw(const struct strbuf *frame)
{
    struct strbuf o;
    strbuf_init(&o);
    strbuf_puts(&o, "\033[H");
    const char *p = frame->data ? frame->data : "";
    const char *end = p + frame->len;
    bool first = true;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (!first)
            strbuf_puts(&o, "\r\n");
        if (first)
            strbuf_puts(&o, "\033[7m");
        strbuf_append(&o, p, n);
        strbuf_puts(&o, first ? "\033[0m\033[K" : "\033[K");
        first = false;
        p += n + (nl != NULL);
    }
    strbuf_puts(&o, "\033[J");
    write_all(o.data, o.len);
    strbuf_free(&o);
}

static bool take_sample(const struct top_opts *o, struct top_sample *s, char *err, size_t errlen)
{
    struct strbuf b;
    strbuf_init(&b);
    bool ok = o->fetch(o->ctx, &b, err, errlen);
    if (ok && b.oom) {
        snprintf(err, errlen, "out of memory");
        ok = false;
    }
    if (ok)
        ok = top_sample_parse(s, b.data ? b.data : "", b.len, now_mono(), err, errlen);
    strbuf_free(&b);
    return ok;
}

static int run_once(const struct top_opts *o)
{
    struct top_sample a, b;
    char err[256];
    if (!take_sample(o, &a, err, sizeof(err))) {
        fprintf(stderr, "sluicectl: top: %s\n", err);
        return 1;
    }
    struct timespec ts = {.tv_sec = (time_t)o->interval,
                          .tv_nsec = (long)((o->interval - floor(o->interval)) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    if (!take_sample(o, &b, err, sizeof(err))) {
        fprintf(stderr, "sluicectl: top: %s\n", err);
        top_sample_free(&a);
        return 1;
    }
    top_rates(&b, &a);
    top_sort_rows(&b, o->sort);
    struct strbuf f;
    strbuf_init(&f);
    top_render(&b, o->sort, o->interval, NULL, 0, 0, &f);
    fwrite(f.data, 1, f.len, stdout);
    strbuf_free(&f);
    top_sample_free(&a);
    top_sample_free(&b);
    return 0;
}

int top_run(const struct top_opts *o)
{
    if (o->once)
        return run_once(o);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "sluicectl: top needs a terminal (use --once for one plain frame)\n");
        return 2;
    }
    struct top_sample prev = {0}, cur = {0};
    char err[256];
    if (!take_sample(o, &cur, err, sizeof(err))) {
        fprintf(stderr, "sluicectl: top: %s\n", err);
        return 1;
    }
    top_rates(&cur, NULL);
    struct sigaction sa = {.sa_handler = on_stop};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction old[4], old_winch;
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &old[i]);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, &old_winch);
    struct sigaction old_tstp;
    sa.sa_handler = on_tstp;
    sigaction(SIGTSTP, &sa, &old_tstp);
    if (!term_enter()) {
        fprintf(stderr, "sluicectl: top: cannot set up the terminal: %s\n", strerror(errno));
        top_sample_free(&cur);
        return 1;
    }
    enum top_sort key = o->sort;
    char note[256] = "";
    double next = now_mono() + o->interval;
    bool redraw = true;
    while (!got_stop) {
        if (redraw) {
            int w, h;
            term_size(&w, &h);
            top_sort_rows(&cur, key);
            struct strbuf f;
            strbuf_init(&f);
            top_render(&cur, key, o->interval, note[0] ? note : NULL, w, h, &f);
            term_draw(&f);
            strbuf_free(&f);
            redraw = false;
        }
        double left = next - now_mono();
        if (left <= 0) {
            struct top_sample s;
            if (take_sample(o, &s, err, sizeof(err))) {
                top_rates(&s, &cur);
                top_sample_free(&prev);
                prev = cur;
                cur = s;
                note[0] = '\0';
            } else {
                snprintf(note, sizeof(note), "%s", err);
            }
            next = now_mono() + o->interval;
            redraw = true;
            continue;
        }
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int pr = poll(&p, 1, (int)ceil(left * 1000));
        if (got_tstp) {
            /* Ctrl-Z: give the shell its terminal back, stop, and take
             * it again when continued. */
            got_tstp = 0;
            term_restore();
            struct sigaction dfl = {.sa_handler = SIG_DFL};
            sigemptyset(&dfl.sa_mask);
            sigaction(SIGTSTP, &dfl, NULL);
            raise(SIGTSTP);
            sa.sa_handler = on_tstp;
            sigaction(SIGTSTP, &sa, NULL);
            if (!term_enter())
                break;
            redraw = true;
        }
        if (got_winch) {
            got_winch = 0;
            redraw = true;
        }
        if (pr > 0) {
            char keys[64];
            ssize_t n = read(STDIN_FILENO, keys, sizeof(keys));
            if (n == 0)
                break; /* the terminal went away */
            for (ssize_t i = 0; i < n; i++) {
                if (keys[i] == 'q' || keys[i] == 'Q') {
                    got_stop = -1;
                    break;
                }
                int k = top_sort_key(keys[i]);
                if (k >= 0) {
                    key = (enum top_sort)k;
                    redraw = true;
                }
            }
        }
    }
    term_restore();
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &old[i], NULL);
    sigaction(SIGWINCH, &old_winch, NULL);
    sigaction(SIGTSTP, &old_tstp, NULL);
    top_sample_free(&prev);
    top_sample_free(&cur);
    int sig = got_stop > 0 ? got_stop : 0;
    if (sig > 0) {
        /* Die by the signal as the caller expects, terminal restored. */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    return 0;
}
