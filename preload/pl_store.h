/* pl_store: the process's store connector, opened on first use. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include "psi_policy.h"
#include "psi_store.h"

/* Puts through the connector the decision names (NULL: the default). */
int pl_store_put(const void *buf, size_t n, const pol_decision *d, psi_token *tok, psi_err *err);
int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err);
/* In a fork child: the parent's store handles are let go, not used. */
void pl_store_atfork_child(void);

#endif
