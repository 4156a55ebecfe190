/* pl_store: the process's store connector, opened on first use. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include "psi_policy.h"
#include "psi_store.h"

/* Puts through the connector the decision names (NULL: the default). */
int pl_store_put(const void *buf, size_t n, const pol_decision *d, psi_token *tok, psi_err *err);
/* A new reference to tok's object in the connector that made it (a
 * fan-out); -1 if the connector cannot, and the caller puts again. */
int pl_store_ref(const psi_token *tok, const pol_decision *d, psi_token *out, psi_err *err);
int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err);

#endif
