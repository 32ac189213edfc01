/* test_statspage.c - the admin_http stats page (statspage.h): the
 * server-rendered tables, escaping of every name, a page even for a
 * document that does not parse. */
#include "sluice/statspage.h"

#include "unit.h"

static char *render(const char *json)
{
    struct strbuf b;
    strbuf_init(&b);
    statspage_render(json, strlen(json), &b);
    strbuf_append(&b, "", 1);
    return b.data;
}

static void test_escape(void)
{
    struct strbuf b;
    strbuf_init(&b);
    statspage_escape(&b, "a<b>&\"c'd");
    strbuf_append(&b, "", 1);
    CHECK_STR(b.data, "a&lt;b&gt;&amp;&quot;c&#39;d");
    strbuf_free(&b);
}

static void test_tables(void)
{
    char *p = render("{\"info\":{\"version\":\"0.1.0\",\"pid\":7,\"workers\":2},"
                     "\"listeners\":[{\"name\":\"web\",\"binds\":[\"127.0.0.1:80\",\"[::1]:80\"],"
                     "\"pool\":\"web\",\"active\":3,\"accepted\":9}],"
                     "\"servers\":[{\"pool\":\"web\",\"name\":\"<img src=x>\",\"address\":\"a\","
                     "\"state\":\"down\",\"admin\":\"enabled\",\"active\":1,\"sessions\":5,"
                     "\"connect_failures\":2,\"local_errors\":1,\"check\":\"refused\","
                     "\"check_ms\":0.25}],"
                     "\"pools\":[{\"name\":\"web\",\"queue\":4,\"max_queue\":10,\"queued\":6}]}");
    REQUIRE(p != NULL);
    CHECK(strncmp(p, "<!DOCTYPE html>", 15) == 0);
    CHECK(strstr(p, "<td>web</td><td class=\"t\">127.0.0.1:80 [::1]:80</td>") != NULL);
    CHECK(strstr(p, "<img") == NULL); /* the name is escaped everywhere */
    CHECK(strstr(p, "data-server=\"web/&lt;img src=x&gt;\" data-state=\"down\"") != NULL);
    CHECK(strstr(p, "<span class=\"st st-down\">down</span>") != NULL);
    CHECK(strstr(p, "<td>3</td>") != NULL); /* errors: 2 + 1 */
    CHECK(strstr(p, "refused 0.2ms") != NULL || strstr(p, "refused 0.3ms") != NULL);
    CHECK(strstr(p, "<svg class=\"spark\"") != NULL);
    CHECK(strstr(p, "<td>web</td><td>4</td><td>10</td><td>6</td>") != NULL);
    CHECK(strstr(p, "setTimeout(tick,2000)") != NULL);
    CHECK(strstr(p, "innerHTML") == NULL);
    CHECK(strstr(p, "</html>\n") != NULL);
    free(p);
}

static void test_broken_document(void)
{
    char *p = render("{\"info\":");
    REQUIRE(p != NULL);
    CHECK(strstr(p, "stats unavailable: offset") != NULL);
    CHECK(strstr(p, "<table id=\"servers\">") != NULL); /* empty, but there */
    free(p);
}

UNIT_MAIN(TEST(test_escape), TEST(test_tables), TEST(test_broken_document))
