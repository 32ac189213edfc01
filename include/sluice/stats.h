/* stats.h - sum the per-worker counters and render them: the admin
 * socket's text tables and JSON, and Prometheus text for /metrics. */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

struct control;
struct server_conf;
struct strbuf;

void stats_info(struct control *ctl, struct strbuf *out);
void stats_table(struct control *ctl, struct strbuf *out);
void stats_json(struct control *ctl, struct strbuf *out);
void stats_backends(struct control *ctl, struct strbuf *out);
void stats_prometheus(struct control *ctl, struct strbuf *out);
/* show latency: sv's histograms as a table, or (sv NULL) one line per
 * server and per listener. */
void stats_latency(struct control *ctl, struct server_conf *sv, struct strbuf *out);

#endif
