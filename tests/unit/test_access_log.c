/* test_access_log.c - the access-log formatter (access_log.h): the kv line
 * byte for byte, json (every field, types, escaping of hostile strings),
 * templates and their compile errors, and the syslog target and facility
 * parsers (log.h). */
#include "unit.h"

#include "sluice/access_log.h"
#include "sluice/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static struct access_rec sample(void)
{
    return (struct access_rec){
        .time = "2026-11-23T10:13:36.991Z",
        .start = "2026-11-23T10:13:36.986Z",
        .worker = 1,
        .listener = "web",
        .client = "127.0.0.1:33584",
        .pool = "app",
        .backend = "app1",
        .addr = "127.0.0.1:20101",
        .up = 300000,
        .down = 18446744073709551615ULL,
        .duration_ms = 5.4,
        .queued_ms = 0,
        .connect_ms = 1.5,
        .reason = "client_close",
        .sni = NULL,
        .term_side = "client",
        .term_phase = "close",
        .id = 513,
    };
}

static const char *line_of(const struct access_format *f, const struct access_rec *r, char *buf)
{
    size_t n = access_format_line(f, r, buf);
    buf[n] = '\0';
    return buf;
}

static void test_kv_line(void)
{
    struct access_format f;
    char err[200], buf[ACCESS_LINE_MAX + 1];
    REQUIRE(access_format_compile("kv", &f, err, sizeof(err)) == 0);
    struct access_rec r = sample();
    /* Today's fields first, unchanged; the new ones after queued_ms. */
    CHECK_STR(line_of(&f, &r, buf),
              "2026-11-23T10:13:36.991Z worker=1 listener=web client=127.0.0.1:33584 "
              "backend=app1 addr=127.0.0.1:20101 up=300000 down=18446744073709551615 "
              "duration_ms=5 reason=client_close sni=- queued_ms=0 pool=app server=app/app1 "
              "connect_ms=2 start=2026-11-23T10:13:36.986Z term_side=client term_phase=close id=513\n");
    r.backend = r.addr = NULL;
    r.connect_ms = -1;
    r.duration_ms = 2.5; /* %.0f rounds ties to even */
    r.sni = "api.example.com";
    line_of(&f, &r, buf);
    CHECK(strstr(buf, " backend=- addr=- ") != NULL);
    CHECK(strstr(buf, " duration_ms=2 ") != NULL);
    CHECK(strstr(buf, " server=- connect_ms=- ") != NULL);
    CHECK(strstr(buf, " sni=api.example.com ") != NULL);
    access_format_free(&f);
}

static void test_json_every_field(void)
{
    struct access_format f;
    char err[200], buf[ACCESS_LINE_MAX + 1];
    REQUIRE(access_format_compile("json", &f, err, sizeof(err)) == 0);
    struct access_rec r = sample();
    CHECK_STR(line_of(&f, &r, buf),
              "{\"time\":\"2026-11-23T10:13:36.991Z\",\"worker\":1,\"listener\":\"web\","
              "\"client\":\"127.0.0.1:33584\",\"backend\":\"app1\",\"addr\":\"127.0.0.1:20101\","
              "\"up\":300000,\"down\":18446744073709551615,\"duration_ms\":5,"
              "\"reason\":\"client_close\",\"sni\":null,\"queued_ms\":0,\"pool\":\"app\","
              "\"server\":\"app/app1\",\"connect_ms\":2,\"start\":\"2026-11-23T10:13:36.986Z\","
              "\"term_side\":\"client\",\"term_phase\":\"close\",\"id\":513}\n");
    /* Every field of the table is in the object. */
    for (int i = 0; i < ACCESS_FIELD_COUNT; i++) {
        char key[64];
        snprintf(key, sizeof(key), "\"%s\":", access_field_name((enum access_field)i));
        CHECK_MSG(strstr(buf, key) != NULL, "field %s missing", key);
    }
    r.backend = r.addr = NULL;
    r.connect_ms = -1;
    line_of(&f, &r, buf);
    CHECK(strstr(buf, "\"backend\":null,\"addr\":null,") != NULL);
    CHECK(strstr(buf, "\"server\":null,\"connect_ms\":null,") != NULL);
    access_format_free(&f);
}

static void test_json_escaping(void)
{
    struct access_format f;
    char err[200], buf[ACCESS_LINE_MAX + 1];
    REQUIRE(access_format_compile("json", &f, err, sizeof(err)) == 0);
    struct access_rec r = sample();
    r.sni = "a\"b\\c\nd\te\x01\x7f\xc3\xa9}";
    line_of(&f, &r, buf);
    CHECK_MSG(strstr(buf, "\"sni\":\"a\\\"b\\\\c\\u000ad\\u0009e\\u0001\\u007f\\u00c3\\u00a9}\"") !=
                  NULL,
              "got %s", buf);
    /* Only printable ASCII goes out, one line. */
    size_t n = strlen(buf);
    CHECK(buf[n - 1] == '\n');
    for (size_t i = 0; i + 1 < n; i++)
        CHECK_MSG(buf[i] >= 0x20 && buf[i] < 0x7f, "byte %zu is 0x%02x", i, (unsigned char)buf[i]);
    /* A name long enough to overflow the line: the object stays whole. */
    static char huge[ACCESS_LINE_MAX];
    memset(huge, '"', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    r.sni = huge;
    n = access_format_line(&f, &r, buf);
    buf[n] = '\0';
    CHECK(n < ACCESS_LINE_MAX);
    CHECK(strstr(buf, "\"sni\":\"(too long)\"") != NULL);
    CHECK(strcmp(buf + n - 10, "\"id\":513}\n") == 0);
    access_format_free(&f);
}

static void test_template(void)
{
    struct access_format f;
    char err[200], buf[ACCESS_LINE_MAX + 1];
    REQUIRE(access_format_compile("%{client} -> %{server} [%{term_side}/%{term_phase}] 100%% "
                                  "%{up}/%{down}%{reason}",
                                  &f, err, sizeof(err)) == 0);
    struct access_rec r = sample();
    CHECK_STR(line_of(&f, &r, buf), "127.0.0.1:33584 -> app/app1 [client/close] 100% "
                                    "300000/18446744073709551615client_close\n");
    access_format_free(&f);
    /* Every field name compiles. */
    for (int i = 0; i < ACCESS_FIELD_COUNT; i++) {
        char spec[64];
        snprintf(spec, sizeof(spec), "x%%{%s}y", access_field_name((enum access_field)i));
        CHECK_MSG(access_format_compile(spec, &f, err, sizeof(err)) == 0, "%s: %s", spec, err);
        CHECK_EQ_INT(f.nops, 3);
        access_format_free(&f);
    }
    REQUIRE(access_format_compile("%%", &f, err, sizeof(err)) == 0);
    CHECK_STR(line_of(&f, &r, buf), "%\n");
    access_format_free(&f);
}

static void test_template_errors(void)
{
    static const struct {
        const char *spec, *why;
    } bad[] = {
        {"jsn", "'jsn' is not kv, json or a template with %{field}"},
        {"%{client} %{nope}", "column 11: unknown field 'nope'"},
        {"abc %{client", "column 5: '%{' without a closing '}'"},
        {"100% sure %{client}", "column 4: '%' must start %{field} or be doubled (%%)"},
        {"%", "column 1: '%' must start %{field} or be doubled (%%)"},
        {"%{}", "column 1: unknown field ''"},
        {"%{client}\x01", "column 10: control character in the template"},
    };
    for (size_t i = 0; i < UNIT_LEN(bad); i++) {
        struct access_format f;
        char err[200] = "";
        CHECK_MSG(access_format_compile(bad[i].spec, &f, err, sizeof(err)) < 0, "%s", bad[i].spec);
        CHECK_STR(err, bad[i].why);
        CHECK(f.ops == NULL && f.text == NULL);
    }
}

static void test_time_format(void)
{
    static const double ts[] = {0,
                                1.5,
                                1795000000.0,
                                1795000000.9999,
                                1795000001.001,
                                1795000001.25,
                                1795086399.999,
                                1795086400.0,
                                4102444800.123};
    char buf[ACCESS_TIME_LEN], want[64];
    for (size_t i = 0; i < UNIT_LEN(ts); i++) {
        time_t sec = (time_t)ts[i];
        struct tm tm;
        gmtime_r(&sec, &tm);
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)((ts[i] - (double)sec) * 1000.0));
        access_time_format(ts[i], buf);
        CHECK_STR(buf, want);
        /* again: from the per-thread cache */
        access_time_format(ts[i], buf);
        CHECK_STR(buf, want);
    }
    access_time_format(1795000000.0, buf);
    CHECK_STR(buf, "2026-11-18T11:06:40.000Z");
}

static void test_syslog_targets(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    bool is_unix;
    CHECK(log_syslog_parse("syslog:/dev/log", &ss, &len, &is_unix) == NULL && is_unix);
    CHECK(log_syslog_parse("syslog:unix:/tmp/x.sock", &ss, &len, &is_unix) == NULL && is_unix);
    CHECK(log_syslog_parse("syslog:127.0.0.1:514", &ss, &len, &is_unix) == NULL && !is_unix &&
          ss.ss_family == AF_INET);
    CHECK(log_syslog_parse("syslog:[::1]:5514", &ss, &len, &is_unix) == NULL &&
          ss.ss_family == AF_INET6);
    CHECK(log_syslog_parse("syslog:", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:127.0.0.1", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:127.0.0.1:0", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:127.0.0.1:70000", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:localhost:514", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:::1:514", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:[::1]514", &ss, &len, &is_unix) != NULL);
    CHECK(log_syslog_parse("syslog:unix:relative", &ss, &len, &is_unix) != NULL);
    CHECK_EQ_INT(log_syslog_facility_parse("local0"), 16);
    CHECK_EQ_INT(log_syslog_facility_parse("LOCAL7"), 23);
    CHECK_EQ_INT(log_syslog_facility_parse("daemon"), 3);
    CHECK_EQ_INT(log_syslog_facility_parse("local8"), -1);
    CHECK_STR(log_syslog_facility_str(10), "authpriv");
}

UNIT_MAIN(TEST(test_kv_line), TEST(test_json_every_field), TEST(test_json_escaping),
          TEST(test_template), TEST(test_template_errors), TEST(test_time_format),
          TEST(test_syslog_targets))
