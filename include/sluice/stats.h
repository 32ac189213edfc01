/* stats.h - sum the per-worker counters and render them: the admin
 * socket's text tables and JSON, and Prometheus text for /metrics. */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

struct control;
struct strbuf;

void stats_info(struct control *ctl, struct strbuf *out);
void stats_table(struct control *ctl, struct strbuf *out);
void stats_json(struct control *ctl, struct strbuf *out);
void stats_backends(struct control *ctl, struct strbuf *out);
void stats_prometheus(struct control *ctl, struct strbuf *out);

#endif
