/* statspage.c - the admin_http stats page (see statspage.h). The server
 * side reads the same JSON as /stats.json (json.c) and writes the tables;
 * the inline script replaces their bodies from /stats.json every
 * STATSPAGE_REFRESH_S seconds and keeps the sparkline history in the
 * browser (nothing is stored in sluice for it). Every name from the
 * config is escaped here, and set with textContent by the script. */
#include "sluice/statspage.h"

#include "sluice/json.h"

#include <stdio.h>
#include <string.h>

void statspage_escape(struct strbuf *out, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            strbuf_puts(out, "&amp;");
            break;
        case '<':
            strbuf_puts(out, "&lt;");
            break;
        case '>':
            strbuf_puts(out, "&gt;");
            break;
        case '"':
            strbuf_puts(out, "&quot;");
            break;
        case '\'':
            strbuf_puts(out, "&#39;");
            break;
        default:
            strbuf_append(out, p, 1);
        }
    }
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>sluice stats</title>\n<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}\n"
    "h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .3em}\n"
    "table{border-collapse:collapse;background:#fff}\n"
    "th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\n"
    "th{background:#eee}th:first-child,td:first-child,.t{text-align:left}\n"
    ".st{font-weight:600;border-radius:3px;padding:0 .4em}\n"
    ".st-up{background:#c8efc8;color:#135f13}.st-down{background:#f7c6c6;color:#8a1111}\n"
    ".st-draining,.st-drained{background:#ffe2b0;color:#7a4a00}"
    ".st-disabled{background:#ddd;color:#555}\n"
    "svg.spark{width:120px;height:22px;vertical-align:middle;background:#eef3fb}\n"
    "svg.spark polyline{fill:none;stroke:#2a6fdb;stroke-width:1.5}\n"
    "#status{color:#666}\n"
    "</style>\n</head>\n<body>\n";

static void cell(struct strbuf *out, const char *cls, const char *text)
{
    strbuf_puts(out, cls ? "<td class=\"" : "<td");
    if (cls) {
        strbuf_puts(out, cls);
        strbuf_puts(out, "\"");
    }
    strbuf_puts(out, ">");
    statspage_escape(out, text);
    strbuf_puts(out, "</td>");
}

static void cell_num(struct strbuf *out, const struct json_value *v)
{
    char buf[32];
    if (v == NULL || v->type != JSON_NUMBER)
        snprintf(buf, sizeof(buf), "-");
    else
        snprintf(buf, sizeof(buf), "%.0f", v->num);
    cell(out, NULL, buf);
}

static void listeners(struct strbuf *out, const struct json_value *ls)
{
    strbuf_puts(
        out, "<h2>Listeners</h2>\n<table id=\"listeners\"><thead><tr><th>listener</th>"
             "<th class=\"t\">binds</th><th class=\"t\">pool</th><th>active</th><th>accepted</th>"
             "<th>no backend</th><th>bytes in</th><th>bytes out</th></tr></thead>"
             "<tbody>\n");
    for (const struct json_value *l = ls ? ls->child : NULL; l != NULL; l = l->next) {
        strbuf_puts(out, "<tr>");
        cell(out, NULL, json_str(json_get(l, "name"), "?"));
        struct strbuf binds;
        strbuf_init(&binds);
        const struct json_value *b = json_get(l, "binds");
        for (const struct json_value *a = b ? b->child : NULL; a != NULL; a = a->next) {
            strbuf_puts(&binds, a == b->child ? "" : " ");
            strbuf_puts(&binds, json_str(a, "?"));
        }
        cell(out, "t", binds.data ? binds.data : "");
        strbuf_free(&binds);
        cell(out, "t", json_str(json_get(l, "pool"), "(sni)"));
        cell_num(out, json_get(l, "active"));
        cell_num(out, json_get(l, "accepted"));
        cell_num(out, json_get(l, "no_backend"));
        cell_num(out, json_get(l, "bytes_in"));
        cell_num(out, json_get(l, "bytes_out"));
        strbuf_puts(out, "</tr>\n");
    }
    strbuf_puts(out, "</tbody></table>\n");
}

static void servers(struct strbuf *out, const struct json_value *ss)
{
    strbuf_puts(
        out, "<h2>Servers</h2>\n<table id=\"servers\"><thead><tr><th>server</th>"
             "<th class=\"t\">address</th><th class=\"t\">state</th><th class=\"t\">admin</th>"
             "<th>weight</th>"
             "<th>active</th><th>sessions</th><th>sessions/s</th><th>errors</th>"
             "<th>bytes in</th><th>bytes out</th><th class=\"t\">check</th></tr></thead><tbody>\n");
    for (const struct json_value *v = ss ? ss->child : NULL; v != NULL; v = v->next) {
        char full[512], buf[64];
        snprintf(full, sizeof(full), "%s/%s", json_str(json_get(v, "pool"), "?"),
                 json_str(json_get(v, "name"), "?"));
        const char *state = json_str(json_get(v, "state"), "?");
        strbuf_puts(out, "<tr data-server=\"");
        statspage_escape(out, full);
        strbuf_puts(out, "\" data-state=\"");
        statspage_escape(out, state);
        strbuf_puts(out, "\">");
        cell(out, NULL, full);
        cell(out, "t", json_str(json_get(v, "address"), "-"));
        strbuf_puts(out, "<td class=\"t\"><span class=\"st st-");
        statspage_escape(out, state);
        strbuf_puts(out, "\">");
        statspage_escape(out, state);
        strbuf_puts(out, "</span></td>");
        cell(out, "t", json_str(json_get(v, "admin"), "-"));
        cell_num(out, json_get(v, "weight"));
        cell_num(out, json_get(v, "active"));
        cell_num(out, json_get(v, "sessions"));
        /* Filled by the script from successive samples. */
        strbuf_puts(out, "<td><svg class=\"spark\" viewBox=\"0 0 120 22\" "
                         "preserveAspectRatio=\"none\"><polyline points=\"\"/></svg> "
                         "<span class=\"rate\">-</span></td>");
        snprintf(buf, sizeof(buf), "%.0f",
                 json_num(json_get(v, "connect_failures"), 0) +
                     json_num(json_get(v, "local_errors"), 0));
        cell(out, NULL, buf);
        cell_num(out, json_get(v, "bytes_in"));
        cell_num(out, json_get(v, "bytes_out"));
        snprintf(buf, sizeof(buf), "%s %.1fms", json_str(json_get(v, "check"), "-"),
                 json_num(json_get(v, "check_ms"), 0));
        cell(out, "t", buf);
        strbuf_puts(out, "</tr>\n");
    }
    strbuf_puts(out, "</tbody></table>\n");
}

static void pools(struct strbuf *out, const struct json_value *ps)
{
    strbuf_puts(out, "<h2>Pools</h2>\n<table id=\"pools\"><thead><tr><th>pool</th><th>queue</th>"
                     "<th>max queue</th><th>queued</th></tr></thead><tbody>\n");
    for (const struct json_value *p = ps ? ps->child : NULL; p != NULL; p = p->next) {
        strbuf_puts(out, "<tr>");
        cell(out, NULL, json_str(json_get(p, "name"), "?"));
        cell_num(out, json_get(p, "queue"));
        cell_num(out, json_get(p, "max_queue"));
        cell_num(out, json_get(p, "queued"));
        strbuf_puts(out, "</tr>\n");
    }
    strbuf_puts(out, "</tbody></table>\n");
}

/* The refresh: fetch /stats.json, rebuild the table bodies with
 * textContent (never innerHTML), keep HIST samples per server for the
 * sparkline of sessions/s (5 minutes at 2 s; until there are that many,
 * the line spans what there is). */
static const char page_script[] =
    "<script>\n"
    "(function(){\n"
    "'use strict';\n"
    "var HIST=150,hist={},prev=null,refreshes=0;\n"
    "function td(row,text,cls){var c=document.createElement('td');"
    "if(cls)c.className=cls;c.textContent=text;row.appendChild(c);return c;}\n"
    "function num(v){return typeof v==='number'?String(Math.round(v)):'-';}\n"
    "function rebuild(id,items,fill){var t=document.getElementById(id);if(!t)return;"
    "var "
    "b=document.createElement('tbody');b.setAttribute('data-live','1');items.forEach(function(x){"
    "var r=document.createElement('tr');fill(r,x);b.appendChild(r);});"
    "t.replaceChild(b,t.tBodies[0]);}\n"
    "function spark(cell,h){var ns='http://www.w3.org/2000/svg';"
    "var s=document.createElementNS(ns,'svg');s.setAttribute('class','spark');"
    "s.setAttribute('viewBox','0 0 120 22');s.setAttribute('preserveAspectRatio','none');"
    "var p=document.createElementNS(ns,'polyline');var max=1,pts=[];"
    "h.forEach(function(v){if(v>max)max=v;});"
    "var n=Math.max(h.length-1,1);"
    "h.forEach(function(v,i){pts.push((120*i/n).toFixed(1)+','"
    "+(21-20*v/max).toFixed(1));});"
    "p.setAttribute('points',pts.join(' '));s.appendChild(p);cell.appendChild(s);"
    "var r=document.createElement('span');r.className='rate';"
    "r.textContent=h.length?' '+h[h.length-1].toFixed(1):' -';cell.appendChild(r);}\n"
    "function render(d,now){\n"
    "var i=d.info||{};document.getElementById('info').textContent='sluice '+i.version+"
    "', pid '+i.pid+', up '+Math.round(i.uptime_seconds)+' s, '+i.workers+' workers, '+"
    "i.sessions_active+' active sessions, '+i.sessions_total+' in all, generation '+"
    "i.generation;\n"
    "rebuild('listeners',d.listeners||[],function(r,l){td(r,l.name);"
    "td(r,(l.binds||[]).join(' '),'t');td(r,l.pool===null?'(sni)':l.pool,'t');"
    "td(r,num(l.active));td(r,num(l.accepted));td(r,num(l.no_backend));"
    "td(r,num(l.bytes_in));td(r,num(l.bytes_out));});\n"
    "var seen={};\n"
    "rebuild('servers',d.servers||[],function(r,s){var k=s.pool+'/'+s.name;seen[k]=1;"
    "var h=hist[k]||(hist[k]=[]);"
    "if(prev&&prev.s[k]!==undefined&&now>prev.t){"
    "h.push(Math.max(0,s.sessions-prev.s[k])/((now-prev.t)/1000));"
    "if(h.length>HIST)h.shift();}\n"
    "r.setAttribute('data-server',k);r.setAttribute('data-state',s.state);"
    "td(r,k);td(r,s.address,'t');var c=td(r,'','t');var st=document.createElement('span');"
    "st.className='st st-'+s.state;st.textContent=s.state;c.appendChild(st);"
    "td(r,s.admin,'t');td(r,num(s.weight));td(r,num(s.active));td(r,num(s.sessions));"
    "spark(td(r,''),h);td(r,num((s.connect_failures||0)+(s.local_errors||0)));"
    "td(r,num(s.bytes_in));td(r,num(s.bytes_out));"
    "td(r,s.check+' '+(s.check_ms||0).toFixed(1)+'ms','t');});\n"
    "Object.keys(hist).forEach(function(k){if(!seen[k])delete hist[k];});\n"
    "rebuild('pools',d.pools||[],function(r,p){td(r,p.name);td(r,num(p.queue));"
    "td(r,num(p.max_queue));td(r,num(p.queued));});\n"
    "var ps={};(d.servers||[]).forEach(function(s){ps[s.pool+'/'+s.name]=s.sessions;});"
    "prev={t:now,s:ps};}\n"
    "function tick(){fetch('/stats.json',{cache:'no-store'}).then(function(r){"
    "if(!r.ok)throw new Error('HTTP '+r.status);return r.json();}).then(function(d){"
    "render(d,Date.now());refreshes++;var st=document.getElementById('status');"
    "st.textContent='live: refreshed every @REFRESH@ s, last '+new Date().toLocaleTimeString()"
    ";st.setAttribute('data-refreshes',String(refreshes));}).catch(function(e){"
    "document.getElementById('status').textContent='refresh failed: '+e.message;})"
    ".then(function(){setTimeout(tick,@REFRESH@000);});}\n"
    "tick();\n"
    "})();\n"
    "</script>\n";

void statspage_render(const char *json, size_t len, struct strbuf *out)
{
    char err[128];
    struct json_doc *doc = json_parse(json, len, err, sizeof(err));
    const struct json_value *root = json_root(doc);
    strbuf_puts(out, page_head);
    strbuf_puts(out, "<h1>sluice</h1>\n<p id=\"info\">");
    if (doc == NULL) {
        strbuf_puts(out, "stats unavailable: ");
        statspage_escape(out, err);
    } else {
        const struct json_value *i = json_get(root, "info");
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "sluice %s, pid %.0f, up %.0f s, %.0f workers, %.0f active sessions, %.0f in all, "
                 "generation %.0f",
                 json_str(json_get(i, "version"), "?"), json_num(json_get(i, "pid"), 0),
                 json_num(json_get(i, "uptime_seconds"), 0), json_num(json_get(i, "workers"), 0),
                 json_num(json_get(i, "sessions_active"), 0),
                 json_num(json_get(i, "sessions_total"), 0),
                 json_num(json_get(i, "generation"), 0));
        statspage_escape(out, buf);
    }
    strbuf_puts(out, "</p>\n<p id=\"status\" data-refreshes=\"0\">static: rendered by sluice; "
                     "with JavaScript on, this page refreshes itself</p>\n");
    listeners(out, json_get(root, "listeners"));
    servers(out, json_get(root, "servers"));
    pools(out, json_get(root, "pools"));
    strbuf_puts(out, "<p>Raw data: <a href=\"/stats.json\">/stats.json</a>, "
                     "<a href=\"/metrics\">/metrics</a></p>\n");
    /* The script with the refresh period filled in. */
    char refresh[16];
    snprintf(refresh, sizeof(refresh), "%d", STATSPAGE_REFRESH_S);
    const char *p = page_script;
    for (const char *m; (m = strstr(p, "@REFRESH@")) != NULL; p = m + 9) {
        strbuf_append(out, p, (size_t)(m - p));
        strbuf_puts(out, refresh);
    }
    strbuf_puts(out, p);
    strbuf_puts(out, "</body>\n</html>\n");
    json_free(doc);
}
