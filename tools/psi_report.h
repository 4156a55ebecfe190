/* psi_report: renders a merged dry-run report (pol_report) as a terminal
 * table, as JSON, and as one self-contained HTML page (psi dry-run). */
#ifndef PSI_REPORT_H
#define PSI_REPORT_H

#include <stdio.h>

#include "pol_report.h"

typedef struct report_meta {
    char *const *argv;   /* the command that ran */
    int exit_status;     /* its status as psi dry-run returns it */
    uint64_t threshold;  /* the default threshold in effect */
    const char *policy;  /* policy file, or NULL */
    double seconds;      /* wall time of the run */
} report_meta;

/* Terminal: the rule x call site x peer table, totals, the threshold sweep. */
void report_text(FILE *f, const pol_report *r, const report_meta *m);

/* The same data as one JSON object. Returns 0, or -1 on a write error. */
int report_json(FILE *f, const pol_report *r, const report_meta *m);

/* One HTML file, inline CSS and SVG, no script, no external resource.
 * Returns 0, or -1 on a write error. */
int report_html(FILE *f, const pol_report *r, const report_meta *m);

#endif
