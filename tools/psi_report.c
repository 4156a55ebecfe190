/* psi_report: the dry-run report for people (terminal, HTML) and for
 * programs (JSON). The numbers come from pol_report; nothing here counts. */
#include "psi_report.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "psi_tool.h"

#define SITE_COLS 44 /* a call site wider than this is cut in the terminal */

static void human(uint64_t v, char *buf, size_t cap)
{
    cmd_human_bytes(v, buf, cap);
}

/* "4 KiB", "1 MiB": a power of two as a threshold is written. */
static void pow2_name(int k, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    snprintf(buf, cap, "%" PRIu64 " %s", (uint64_t)1 << (k % 10), units[k / 10]);
}

/* The command as one line, quoted where a shell would need it. */
static void command_line(char *const *argv, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; argv && argv[i] && o + 4 < cap; i++) {
        const char *a = argv[i];
        bool quote = !*a || strpbrk(a, " \t\n'\"\\$`|&;<>()*?[]{}~!#") != NULL;
        if (i)
            buf[o++] = ' ';
        if (quote)
            buf[o++] = '\'';
        for (; *a && o + 6 < cap; a++) {
            if (quote && *a == '\'') {
                memcpy(buf + o, "'\\''", 4);
                o += 4;
            } else {
                buf[o++] = *a;
            }
        }
        if (quote)
            buf[o++] = '\'';
        buf[o] = '\0';
    }
}

static uint64_t display_threshold(const pol_report *r, const report_meta *m)
{
    return m->threshold ? m->threshold : r->threshold ? r->threshold : (uint64_t)1 << 20;
}

/* ---- terminal ------------------------------------------------------------- */

static void cut(const char *s, int width, char *buf, size_t cap)
{
    size_t n = strlen(s);
    if (n <= (size_t)width)
        snprintf(buf, cap, "%s", s);
    else
        snprintf(buf, cap, "%.*s...", width - 3, s);
}

static void text_row(FILE *f, const pol_report_row *x, int wr, int ws, int wp)
{
    char site[SITE_COLS + 8], b[32], pb[32], wa[32];
    cut(x->site, SITE_COLS, site, sizeof(site));
    human(x->bytes, b, sizeof(b));
    human(x->proxied_bytes, pb, sizeof(pb));
    human(x->wire_after, wa, sizeof(wa));
    fprintf(f, "%-*s  %-*s  %-*s  %8" PRIu64 "  %10s  %8" PRIu64 "  %10s  %10s  %6.1f%%\n", wr,
            x->rule, ws, site, wp, x->peer, x->sends, b, x->proxied_sends, pb, wa,
            pol_report_saved_pct(x->bytes, x->wire_after));
}

void report_text(FILE *f, const pol_report *r, const report_meta *m)
{
    char cmd[1024], t[32];
    command_line(m->argv, cmd, sizeof(cmd));
    human(display_threshold(r, m), t, sizeof(t));
    fprintf(f, "\npsi dry-run: %s\n", cmd);
    fprintf(f, "exit status %d, %zu process%s observed, %.2f s, threshold %s%s%s\n\n",
            m->exit_status, r->nprocs, r->nprocs == 1 ? "" : "es", m->seconds, t,
            m->policy ? ", policy " : "", m->policy ? m->policy : "");

    int wr = 4, ws = 9, wp = 4;
    for (size_t i = 0; i < r->nrows; i++) {
        int a = (int)strlen(r->rows[i].rule), b = (int)strlen(r->rows[i].site),
            c = (int)strlen(r->rows[i].peer);
        wr = a > wr ? a : wr;
        ws = b > ws ? b : ws;
        wp = c > wp ? c : wp;
    }
    ws = ws > SITE_COLS ? SITE_COLS : ws;
    wr = wr < 5 ? 5 : wr;
    fprintf(f, "%-*s  %-*s  %-*s  %8s  %10s  %8s  %10s  %10s  %7s\n", wr, "RULE", ws,
            "CALL SITE", wp, "PEER", "SENDS", "BYTES", "PROXIED", "PROX BYTES", "WIRE AFTER",
            "SAVED");
    if (r->nrows == 0)
        fprintf(f, "(no sends on sockets or pipes were observed)\n");
    for (size_t i = 0; i < r->nrows; i++)
        text_row(f, &r->rows[i], wr, ws, wp);
    pol_report_row tot;
    pol_report_totals(r, &tot);
    snprintf(tot.site, sizeof(tot.site), "%s", "");
    text_row(f, &tot, wr, ws, wp);

    fprintf(f, "\nThreshold sweep: what a plain threshold would move to the store\n");
    fprintf(f, "%10s  %10s  %12s  %8s\n", "THRESHOLD", "SENDS", "TO STORE", "OF BYTES");
    uint64_t all = 0;
    for (int k = 0; k < POL_REPORT_BUCKETS; k++)
        all += r->hist_bytes[k];
    for (int k = POL_SWEEP_MIN_LOG2; k <= POL_SWEEP_MAX_LOG2; k++) {
        uint64_t th = (uint64_t)1 << k, b = pol_report_sweep(r, th);
        char name[32], hb[32];
        pow2_name(k, name, sizeof(name));
        human(b, hb, sizeof(hb));
        fprintf(f, "%10s  %10" PRIu64 "  %12s  %7.1f%%%s\n", name, pol_report_sweep_sends(r, th),
                hb, all ? 100.0 * (double)b / (double)all : 0.0,
                th == display_threshold(r, m) ? "   <- threshold" : "");
    }
    fputc('\n', f);
}

/* ---- JSON ------------------------------------------------------------------ */

static void json_str(FILE *f, const char *s)
{
    char buf[1024];
    if (pol_json_string(s, buf, sizeof(buf)) < 0)
        snprintf(buf, sizeof(buf), "\"?\"");
    fputs(buf, f);
}

static void json_counts(FILE *f, const pol_report_row *x)
{
    fprintf(f,
            "\"sends\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"proxied_sends\":%" PRIu64
            ",\"proxied_bytes\":%" PRIu64 ",\"wire_after\":%" PRIu64 ",\"saved_pct\":%.2f",
            x->sends, x->bytes, x->proxied_sends, x->proxied_bytes, x->wire_after,
            pol_report_saved_pct(x->bytes, x->wire_after));
}

int report_json(FILE *f, const pol_report *r, const report_meta *m)
{
    fputs("{\"command\":[", f);
    for (size_t i = 0; m->argv && m->argv[i]; i++) {
        if (i)
            fputc(',', f);
        json_str(f, m->argv[i]);
    }
    fprintf(f, "],\n\"exit_status\":%d,\"processes\":%zu,\"seconds\":%.3f,\"threshold\":%" PRIu64
               ",\"token_wire_bytes\":%d,\"policy\":",
            m->exit_status, r->nprocs, m->seconds, display_threshold(r, m),
            POL_REPORT_TOKEN_WIRE);
    if (m->policy)
        json_str(f, m->policy);
    else
        fputs("null", f);
    pol_report_row tot;
    pol_report_totals(r, &tot);
    fputs(",\n\"totals\":{", f);
    json_counts(f, &tot);
    fputs("},\n\"rows\":[", f);
    for (size_t i = 0; i < r->nrows; i++) {
        const pol_report_row *x = &r->rows[i];
        fputs(i ? ",\n{\"rule\":" : "\n{\"rule\":", f);
        json_str(f, x->rule);
        fputs(",\"site\":", f);
        json_str(f, x->site);
        fputs(",\"peer\":", f);
        json_str(f, x->peer);
        fputs(",\"channel\":", f);
        json_str(f, x->channel);
        fputc(',', f);
        json_counts(f, x);
        fputc('}', f);
    }
    fputs("],\n\"sweep\":[", f);
    for (int k = POL_SWEEP_MIN_LOG2; k <= POL_SWEEP_MAX_LOG2; k++) {
        uint64_t th = (uint64_t)1 << k;
        fprintf(f, "%s{\"threshold\":%" PRIu64 ",\"sends\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                k > POL_SWEEP_MIN_LOG2 ? "," : "", th, pol_report_sweep_sends(r, th),
                pol_report_sweep(r, th));
    }
    fputs("],\n\"histogram\":[", f);
    bool first = true;
    for (int k = 0; k < POL_REPORT_BUCKETS; k++) {
        if (!r->hist_count[k])
            continue;
        fprintf(f, "%s{\"log2\":%d,\"from\":%" PRIu64 ",\"count\":%" PRIu64 ",\"bytes\":%" PRIu64
                   "}",
                first ? "" : ",", k, k ? (uint64_t)1 << k : 0, r->hist_count[k],
                r->hist_bytes[k]);
        first = false;
    }
    fputs("],\n\"process_list\":[", f);
    for (size_t i = 0; i < r->nprocs; i++) {
        fprintf(f, "%s{\"pid\":%ld,\"ppid\":%ld,\"exe\":", i ? "," : "", r->procs[i].pid,
                r->procs[i].ppid);
        json_str(f, r->procs[i].exe);
        fputs(",\"argv0\":", f);
        json_str(f, r->procs[i].argv0);
        fputc('}', f);
    }
    fputs("]}\n", f);
    return ferror(f) ? -1 : 0;
}

/* ---- HTML ------------------------------------------------------------------ */

static void html_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char html_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2933;"
    "background:#f4f6f8;margin:0;padding:28px 36px}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}"
    ".cmd{font:13px ui-monospace,Menlo,Consolas,monospace;color:#52606d;word-break:break-all}"
    ".cards{display:flex;flex-wrap:wrap;gap:14px;margin:18px 0 6px}"
    ".card{background:#fff;border-radius:10px;padding:12px 16px;flex:1 1 0;min-width:120px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    ".card .v{font-size:24px;font-weight:650}.card .l{font-size:12px;color:#616e7c;"
    "text-transform:uppercase;letter-spacing:.04em}"
    ".card.good .v{color:#0b7a53}.card.acc .v{color:#2858c9}"
    ".panel{background:#fff;border-radius:10px;padding:14px 18px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12);overflow-x:auto}"
    "table{border-collapse:collapse;width:100%;font-size:13px}"
    "th{text-align:left;font-weight:600;color:#3e4c59;border-bottom:2px solid #cbd2d9;"
    "padding:6px 8px;white-space:nowrap}"
    "td{padding:5px 8px;border-bottom:1px solid #e4e7eb;white-space:nowrap}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "td.site{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}"
    "tr.tot td{font-weight:700;border-top:2px solid #9aa5b1;border-bottom:none}"
    "tr.px td:first-child{border-left:4px solid #2858c9}"
    ".bar{display:inline-block;height:8px;background:#0b7a53;border-radius:4px;"
    "vertical-align:middle;margin-left:6px}"
    ".grid{display:flex;flex-wrap:wrap;gap:18px}.grid .panel{flex:1 1 440px}"
    ".grid svg{display:block;max-width:640px;margin:0 auto}"
    ".note{color:#616e7c;font-size:12px;margin-top:8px}"
    "svg text{font-family:system-ui,sans-serif}";

static void card(FILE *f, const char *cls, const char *value, const char *label)
{
    fprintf(f, "<div class=\"card %s\"><div class=\"v\">", cls);
    html_esc(f, value);
    fputs("</div><div class=\"l\">", f);
    html_esc(f, label);
    fputs("</div></div>\n", f);
}

static void html_table(FILE *f, const pol_report *r)
{
    char b[32], pb[32], wa[32];
    fputs("<div class=\"panel\"><table><thead><tr><th>Rule</th><th>Call site</th><th>Peer</th>"
          "<th>Channel</th><th class=\"n\">Sends</th><th class=\"n\">Bytes</th>"
          "<th class=\"n\">Proxied sends</th><th class=\"n\">Proxied bytes</th>"
          "<th class=\"n\">Wire after</th><th class=\"n\">Saved</th></tr></thead><tbody>\n",
          f);
    pol_report_row tot;
    pol_report_totals(r, &tot);
    for (size_t i = 0; i <= r->nrows; i++) {
        const pol_report_row *x = i < r->nrows ? &r->rows[i] : &tot;
        double pct = pol_report_saved_pct(x->bytes, x->wire_after);
        human(x->bytes, b, sizeof(b));
        human(x->proxied_bytes, pb, sizeof(pb));
        human(x->wire_after, wa, sizeof(wa));
        fprintf(f, "<tr class=\"%s\"><td>", i == r->nrows ? "tot" : x->proxied_sends ? "px" : "");
        html_esc(f, x->rule);
        fputs("</td><td class=\"site\">", f);
        html_esc(f, x->site);
        fputs("</td><td>", f);
        html_esc(f, x->peer);
        fputs("</td><td>", f);
        html_esc(f, x->channel);
        fprintf(f,
                "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%s</td>"
                "<td class=\"n\">%" PRIu64 "</td><td class=\"n\">%s</td><td class=\"n\">%s</td>"
                "<td class=\"n\">%.1f%%<span class=\"bar\" style=\"width:%dpx\"></span></td></tr>\n",
                x->sends, b, x->proxied_sends, pb, wa, pct, (int)(pct * 0.5 + 0.5));
    }
    if (r->nrows == 0)
        fputs("<tr><td colspan=\"10\">No sends on sockets or pipes were observed.</td></tr>\n", f);
    fputs("</tbody></table></div>\n", f);
}

/* Short size label for axes: "4K", "1M", "256M". */
static void axis_size(int k, char *buf, size_t cap)
{
    static const char *const u[] = {"", "K", "M", "G", "T", "P", "E"};
    snprintf(buf, cap, "%" PRIu64 "%s", (uint64_t)1 << (k % 10), u[k / 10]);
}

/* Send-size histogram: one bar per log2 bucket, height log-scaled by count,
 * buckets at or above the threshold in the proxy colour. */
static void svg_histogram(FILE *f, const pol_report *r, uint64_t threshold)
{
    const int W = 560, H = 300, L = 56, R = 16, T = 30, B = 58;
    int lo = POL_REPORT_BUCKETS, hi = -1;
    uint64_t maxc = 0;
    for (int k = 0; k < POL_REPORT_BUCKETS; k++) {
        if (!r->hist_count[k])
            continue;
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
        maxc = r->hist_count[k] > maxc ? r->hist_count[k] : maxc;
    }
    int tk = pol_report_bucket(threshold);
    if (hi < 0) {
        lo = POL_SWEEP_MIN_LOG2;
        hi = tk;
    }
    lo = lo < tk ? lo : tk;
    hi = hi > tk ? hi : tk;
    if (hi - lo < 8) /* a readable minimum width */
        lo = hi - 8 < 0 ? 0 : hi - 8;
    int n = hi - lo + 1;
    double pw = W - L - R, ph = H - T - B, bw = pw / n;
    /* log scale with 1 one unit above the base: 1, 10, 100 ... */
    int decades = (int)ceil(log10((double)(maxc ? maxc : 1)) - 1e-9) + 1;
    decades = decades < 2 ? 2 : decades;
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
               "xmlns=\"http://www.w3.org/2000/svg\">\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"600\" fill=\"#1f2933\">"
               "Send sizes (number of sends per size range)</text>\n", L);
    for (int d = 0; d <= decades; d++) { /* y grid: 0, 1, 10, 100, ... */
        double y = T + ph - ph * d / decades;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>"
                   "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" "
                   "fill=\"#616e7c\">%.0f</text>\n",
                L, W - R, y, y, L - 6, y + 4, d ? pow(10, d - 1) : 0);
    }
    for (int k = lo; k <= hi; k++) {
        uint64_t c = r->hist_count[k];
        double h = c ? ph * (log10((double)c) + 1) / decades : 0;
        double x = L + (k - lo) * bw;
        const char *col = k >= tk ? "#2858c9" : "#9aa5b1";
        if (c) {
            char hb[32];
            human(r->hist_bytes[k], hb, sizeof(hb));
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                       "rx=\"2\"><title>%" PRIu64 " sends, %s</title></rect>\n",
                    x + bw * 0.12, T + ph - h, bw * 0.76, h, col, c, hb);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
                       "fill=\"#1f2933\">%" PRIu64 "</text>\n",
                    x + bw / 2, T + ph - h - 4, c);
        }
        /* bucket k starts at 2^k: its label sits on its left edge */
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#3e4c59\"/>\n",
                x, x, T + ph, T + ph + 4);
        if ((k - lo) % (n > 14 ? 2 : 1) == 0) {
            char lab[16];
            axis_size(k, lab, sizeof(lab));
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" "
                       "fill=\"#3e4c59\">%s</text>\n", x, T + (int)ph + 16, lab);
        }
    }
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#3e4c59\"/>\n", L,
            W - R, T + ph, T + ph);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%.1f\" stroke=\"#3e4c59\"/>\n", L, L, T,
            T + ph);
    /* the threshold, at its place on the log axis */
    double tx = L + (log2((double)threshold) - lo) * bw;
    char tl[32];
    human(threshold, tl, sizeof(tl));
    fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" stroke=\"#d64545\" "
               "stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n"
               "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#d64545\" font-weight=\"600\" "
               "text-anchor=\"%s\">threshold %s</text>\n",
            tx, tx, T + 8, T + ph, tx + (tx > W - 150 ? -6 : 6), T + 18,
            tx > W - 150 ? "end" : "start", tl);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
               "fill=\"#3e4c59\">send size in bytes (log scale; a bar covers 2^k to 2^(k+1))</text>\n",
            L + pw / 2, H - 22);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#2858c9\"/>"
               "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#3e4c59\">would be proxied</text>"
               "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#9aa5b1\"/>"
               "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#3e4c59\">inline</text>\n",
            L, H - 12, L + 14, H - 3, L + 130, H - 12, L + 144, H - 3);
    fputs("</svg>\n", f);
}

/* Sweep curve: bytes moved to the store against the threshold (log x). */
static void svg_sweep(FILE *f, const pol_report *r, uint64_t threshold)
{
    const int W = 560, H = 300, L = 76, R = 20, T = 30, B = 58;
    const int k0 = POL_SWEEP_MIN_LOG2, k1 = POL_SWEEP_MAX_LOG2;
    double pw = W - L - R, ph = H - T - B;
    uint64_t maxb = pol_report_sweep(r, (uint64_t)1 << k0);
    /* round steps in the unit the top is shown in: 1, 2 or 5 x 10^j of
     * B, KiB, MiB ... */
    double top = maxb ? (double)maxb : 1024.0, unit = 1;
    while (top / unit >= 1024)
        unit *= 1024;
    double step = pow(10, floor(log10(top / unit / 4)));
    double ratio = top / unit / step;
    step *= ratio > 20 ? 5 : ratio > 8 ? 2 : 1;
    step = step < 1 ? 1 : step;
    step *= unit;
    double ymax = ceil(top / step) * step;
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" width=\"100%%\" role=\"img\" "
               "xmlns=\"http://www.w3.org/2000/svg\">\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"18\" font-size=\"14\" font-weight=\"600\" fill=\"#1f2933\">"
               "Threshold sweep (bytes that would move to the store)</text>\n", L);
    for (double v = 0; v <= ymax * 1.0001; v += step) {
        double y = T + ph - ph * v / ymax;
        char lab[32];
        static const char *const un[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        int ui = 0;
        for (double u = unit; u >= 1024; u /= 1024)
            ui++;
        snprintf(lab, sizeof(lab), "%g %s", v / unit, un[ui]);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>"
                   "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" "
                   "fill=\"#616e7c\">%s</text>\n",
                L, W - R, y, y, L - 6, y + 4, lab);
    }
    fputs("<polyline fill=\"none\" stroke=\"#0b7a53\" stroke-width=\"2.5\" points=\"", f);
    for (int k = k0; k <= k1; k++) {
        double x = L + pw * (k - k0) / (k1 - k0);
        double y = T + ph - ph * (double)pol_report_sweep(r, (uint64_t)1 << k) / ymax;
        fprintf(f, "%.1f,%.1f ", x, y);
    }
    fputs("\"/>\n", f);
    for (int k = k0; k <= k1; k++) {
        double x = L + pw * (k - k0) / (k1 - k0);
        uint64_t b = pol_report_sweep(r, (uint64_t)1 << k);
        double y = T + ph - ph * (double)b / ymax;
        char lab[16], hb[32];
        axis_size(k, lab, sizeof(lab));
        human(b, hb, sizeof(hb));
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#0b7a53\"><title>"
                   "threshold %s: %s</title></circle>\n", x, y, lab, hb);
        if ((k - k0) % 2 == 0)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" "
                       "fill=\"#3e4c59\">%s</text>\n", x, T + (int)ph + 16, lab);
    }
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#3e4c59\"/>\n", L,
            W - R, T + ph, T + ph);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%.1f\" stroke=\"#3e4c59\"/>\n", L, L, T,
            T + ph);
    double lt = log2((double)threshold);
    if (lt >= k0 && lt <= k1) {
        double x = L + pw * (lt - k0) / (k1 - k0);
        uint64_t b = pol_report_sweep(r, threshold);
        char tl[32], hb[32];
        human(threshold, tl, sizeof(tl));
        human(b, hb, sizeof(hb));
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%.1f\" stroke=\"#d64545\" "
                   "stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n"
                   "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#d64545\" "
                   "font-weight=\"600\" text-anchor=\"%s\">threshold %s: %s</text>\n",
                x, x, T + 8, T + ph, x + (x > W - 200 ? -6 : 6), T + 18,
                x > W - 200 ? "end" : "start", tl, hb);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\" "
               "fill=\"#3e4c59\">threshold (log scale)</text>\n", L + pw / 2, H - 22);
    fputs("</svg>\n", f);
}

int report_html(FILE *f, const pol_report *r, const report_meta *m)
{
    char cmd[1024], v[64], l[96];
    uint64_t threshold = display_threshold(r, m);
    pol_report_row tot;
    pol_report_totals(r, &tot);
    command_line(m->argv, cmd, sizeof(cmd));

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
          "<title>psi dry-run report</title>\n<style>", f);
    fputs(html_css, f);
    fputs("</style></head><body>\n<h1>psi dry-run report</h1>\n<div class=\"cmd\">$ ", f);
    html_esc(f, cmd);
    fputs("</div>\n<div class=\"cards\">\n", f);
    human(tot.bytes, v, sizeof(v));
    snprintf(l, sizeof(l), "sent in %" PRIu64 " sends", tot.sends);
    card(f, "", v, l);
    human(tot.proxied_bytes, v, sizeof(v));
    snprintf(l, sizeof(l), "would be proxied (%" PRIu64 " sends)", tot.proxied_sends);
    card(f, "acc", v, l);
    human(tot.wire_after, v, sizeof(v));
    card(f, "", v, "on the wire after proxying");
    snprintf(v, sizeof(v), "%.1f%%", pol_report_saved_pct(tot.bytes, tot.wire_after));
    card(f, "good", v, "of bytes off the wire");
    human(threshold, v, sizeof(v));
    card(f, "", v, m->policy ? "default threshold (policy)" : "threshold");
    snprintf(v, sizeof(v), "%zu", r->nprocs);
    snprintf(l, sizeof(l), "processes, exit status %d", m->exit_status);
    card(f, "", v, l);
    fputs("</div>\n", f);
    if (m->policy) {
        fputs("<div class=\"note\">Policy: ", f);
        html_esc(f, m->policy);
        fputs("</div>\n", f);
    }

    fputs("<h2>Sends by rule, call site and peer</h2>\n", f);
    html_table(f, r);
    fputs("<div class=\"note\">Observe-only run: nothing was framed, stored or changed on the "
          "wire. <i>Wire after</i> counts a proxied send as its token record (",
          f);
    fprintf(f, "%d bytes) and an inline send as its payload. Sends below 4 KiB share the call "
               "site <i>(small sends)</i>.</div>\n", POL_REPORT_TOKEN_WIRE);

    fputs("<h2>Send sizes and threshold sweep</h2>\n<div class=\"grid\">\n<div class=\"panel\">", f);
    svg_histogram(f, r, threshold);
    fputs("</div>\n<div class=\"panel\">", f);
    svg_sweep(f, r, threshold);
    fputs("</div>\n</div>\n", f);

    fputs("<h2>Threshold sweep</h2>\n<div class=\"panel\"><table><thead><tr><th>Threshold</th>"
          "<th class=\"n\">Sends to the store</th><th class=\"n\">Bytes to the store</th>"
          "<th class=\"n\">Share of bytes</th></tr></thead><tbody>\n", f);
    uint64_t all = 0;
    for (int k = 0; k < POL_REPORT_BUCKETS; k++)
        all += r->hist_bytes[k];
    for (int k = POL_SWEEP_MIN_LOG2; k <= POL_SWEEP_MAX_LOG2; k++) {
        uint64_t th = (uint64_t)1 << k, b = pol_report_sweep(r, th);
        char name[32], hb[32];
        pow2_name(k, name, sizeof(name));
        human(b, hb, sizeof(hb));
        fprintf(f, "<tr%s><td>%s%s</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%s</td>"
                   "<td class=\"n\">%.1f%%</td></tr>\n",
                th == threshold ? " class=\"px\"" : "", name,
                th == threshold ? " (current)" : "", pol_report_sweep_sends(r, th), hb,
                all ? 100.0 * (double)b / (double)all : 0.0);
    }
    fputs("</tbody></table></div>\n", f);

    fputs("<h2>Processes observed</h2>\n<div class=\"panel\"><table><thead><tr>"
          "<th class=\"n\">pid</th><th class=\"n\">ppid</th><th>program</th><th>argv[0]</th>"
          "</tr></thead><tbody>\n", f);
    for (size_t i = 0; i < r->nprocs; i++) {
        fprintf(f, "<tr><td class=\"n\">%ld</td><td class=\"n\">%ld</td><td class=\"site\">",
                r->procs[i].pid, r->procs[i].ppid);
        html_esc(f, r->procs[i].exe);
        fputs("</td><td class=\"site\">", f);
        html_esc(f, r->procs[i].argv0);
        fputs("</td></tr>\n", f);
    }
    fprintf(f, "</tbody></table></div>\n<div class=\"note\">Generated by psi dry-run in %.2f s."
               "</div>\n</body></html>\n", m->seconds);
    return ferror(f) ? -1 : 0;
}
