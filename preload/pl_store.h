/* pl_store: the process's store connector, opened on first use. */
#ifndef PL_STORE_H
#define PL_STORE_H

#include "psi_store.h"

int pl_store_put(const void *buf, size_t n, psi_token *tok, psi_err *err);
int pl_store_resolve(const psi_token *tok, psi_obj *obj, psi_err *err);

#endif
