/* statspage.h - the HTML stats page admin_http serves at GET /: one
 * self-contained document (inline CSS and JavaScript, nothing fetched but
 * /stats.json) rendered on the server from the stats JSON, so its tables
 * work with JavaScript off; with JavaScript on it refreshes itself from
 * /stats.json and draws a sessions/s sparkline per server. */
#ifndef SLUICE_STATSPAGE_H
#define SLUICE_STATSPAGE_H

#include "sluice/strbuf.h"

#include <stddef.h>

/* Seconds between the page's refreshes from /stats.json. */
#define STATSPAGE_REFRESH_S 2

/* Render the page from one stats JSON document into out. A document that
 * does not parse still gives a page, saying so. */
void statspage_render(const char *json, size_t len, struct strbuf *out);
/* Append s with & < > " ' escaped for HTML text and attribute values. */
void statspage_escape(struct strbuf *out, const char *s);

#endif
