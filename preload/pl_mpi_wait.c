/* pl_mpi_wait: Wait/Test and their any/all/some forms (docs/mpi.md).
 *
 * While no request of ours is pending these are the real calls and
 * nothing else. Otherwise the entries of the requests passed in are
 * claimed before the real call (after it, MPI may give a freed handle to
 * another thread's new request), statuses are always collected (a token's
 * real size goes there), each completed request is finished and the
 * others are put back (pl_mpi_int.h). */
#include "pl_mpi_int.h"

#include <stdlib.h>
#include <string.h>

#define PL_MPI_STACK 32

/* Scratch for n requests: on the stack when small. */
typedef struct pl_scratch {
    pl_mpi_req *rs_small[PL_MPI_STACK];
    MPI_Status st_small[PL_MPI_STACK];
    pl_mpi_req **rs; /* claimed entries, NULL where the request is not ours */
    MPI_Status *st;
    bool any;        /* some request is ours */
} pl_scratch;

static bool pl_scratch_init(pl_scratch *s, int n, const MPI_Request *reqs, MPI_Status *user)
{
    size_t k = n > 0 ? (size_t)n : 1;
    bool small = k <= PL_MPI_STACK;
    s->rs = small ? s->rs_small : calloc(k, sizeof *s->rs);
    s->st = user != MPI_STATUSES_IGNORE ? user : small ? s->st_small : malloc(k * sizeof *s->st);
    s->any = false;
    if (!s->rs || !s->st)
        return false;
    for (int i = 0; i < n; i++) {
        s->rs[i] = pl_mpi_req_claim(reqs[i]);
        s->any |= s->rs[i] != NULL;
    }
    return true;
}

/* Puts back every entry not finished or dropped, frees the scratch. */
static void pl_scratch_done(pl_scratch *s, int n, MPI_Status *user)
{
    for (int i = 0; s->rs && i < n; i++)
        if (s->rs[i])
            pl_mpi_req_add(s->rs[i]);
    if (s->rs != s->rs_small)
        free(s->rs);
    if (s->st != user && s->st != s->st_small)
        free(s->st);
}

/* Request i completed with status st (MPI's verdict in err): finish or
 * drop its entry. Returns our error, if any. */
static int pl_settle(pl_scratch *s, int i, MPI_Status *st, int err)
{
    pl_mpi_req *r = s->rs[i];
    s->rs[i] = NULL;
    if (!r)
        return MPI_SUCCESS;
    if (err != MPI_SUCCESS) {
        pl_mpi_req_drop(r);
        return MPI_SUCCESS;
    }
    return pl_mpi_req_finish(r, st);
}

int pl_mpi_wait(MPI_Request *req, MPI_Status *status)
{
    pl_mpi_req *r = pl_mpi_req_claim(*req);
    if (!r)
        return R(Wait)(req, status);
    MPI_Status st;
    int rc = R(Wait)(req, &st);
    if (rc == MPI_SUCCESS)
        rc = pl_mpi_req_finish(r, &st);
    else
        pl_mpi_req_drop(r);
    pl_mpi_status_out(status, &st);
    return rc;
}

int pl_mpi_test(MPI_Request *req, int *flag, MPI_Status *status)
{
    pl_mpi_req *r = pl_mpi_req_claim(*req);
    if (!r)
        return R(Test)(req, flag, status);
    MPI_Status st;
    int rc = R(Test)(req, flag, &st);
    if (rc != MPI_SUCCESS)
        pl_mpi_req_drop(r);
    else if (*flag)
        rc = pl_mpi_req_finish(r, &st);
    else
        pl_mpi_req_add(r);
    pl_mpi_status_out(status, &st);
    return rc;
}

int pl_mpi_waitany(int n, MPI_Request reqs[], int *index, int *flag, MPI_Status *status)
{
    if (!pl_mpi_have_reqs())
        return flag ? R(Testany)(n, reqs, index, flag, status)
                    : R(Waitany)(n, reqs, index, status);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, MPI_STATUSES_IGNORE)) {
        pl_scratch_done(&s, n, MPI_STATUSES_IGNORE);
        return MPI_ERR_NO_MEM;
    }
    MPI_Status st;
    int rc = flag ? R(Testany)(n, reqs, index, flag, &st) : R(Waitany)(n, reqs, index, &st);
    if ((!flag || *flag || rc != MPI_SUCCESS) && *index >= 0 && *index < n) {
        int ours = pl_settle(&s, *index, &st, rc);
        if (rc == MPI_SUCCESS)
            rc = ours;
    }
    pl_scratch_done(&s, n, MPI_STATUSES_IGNORE);
    pl_mpi_status_out(status, &st);
    return rc;
}

/* Finishes the completed requests idx[0..k) (NULL: 0..k), whose statuses
 * are st[0..k). rc is the real call's return; with MPI_ERR_IN_STATUS, a
 * request MPI failed is dropped and one still pending is kept. Our errors
 * turn the result into MPI_ERR_IN_STATUS with every MPI_ERROR set. */
static int pl_finish_all(pl_scratch *s, int k, const int *idx, int rc)
{
    bool bad = false;
    for (int i = 0; i < k; i++) {
        int j = idx ? idx[i] : i, mpi_err = MPI_SUCCESS;
        if (rc == MPI_ERR_IN_STATUS) {
            mpi_err = s->st[i].MPI_ERROR;
            if (mpi_err == MPI_ERR_PENDING)
                continue; /* not completed: put back by pl_scratch_done */
        }
        int e = pl_settle(s, j, &s->st[i], mpi_err);
        if (e != MPI_SUCCESS) {
            s->st[i].MPI_ERROR = e;
            bad = true;
        } else if (rc != MPI_ERR_IN_STATUS) {
            s->st[i].MPI_ERROR = MPI_SUCCESS;
        }
    }
    return bad ? MPI_ERR_IN_STATUS : rc;
}

int pl_mpi_waitall(int n, MPI_Request reqs[], int *flag, MPI_Status *statuses)
{
    if (!pl_mpi_have_reqs())
        return flag ? R(Testall)(n, reqs, flag, statuses) : R(Waitall)(n, reqs, statuses);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, statuses)) {
        pl_scratch_done(&s, n, statuses);
        return MPI_ERR_NO_MEM;
    }
    int rc = flag ? R(Testall)(n, reqs, flag, s.st) : R(Waitall)(n, reqs, s.st);
    if (s.any && (rc == MPI_SUCCESS || rc == MPI_ERR_IN_STATUS) && (!flag || *flag))
        rc = pl_finish_all(&s, n, NULL, rc);
    pl_scratch_done(&s, n, statuses);
    return rc;
}

int pl_mpi_waitsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                    MPI_Status *statuses, bool test)
{
    if (!pl_mpi_have_reqs())
        return test ? R(Testsome)(n, reqs, outcount, indices, statuses)
                    : R(Waitsome)(n, reqs, outcount, indices, statuses);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, statuses)) {
        pl_scratch_done(&s, n, statuses);
        return MPI_ERR_NO_MEM;
    }
    int rc = test ? R(Testsome)(n, reqs, outcount, indices, s.st)
                  : R(Waitsome)(n, reqs, outcount, indices, s.st);
    if (s.any && (rc == MPI_SUCCESS || rc == MPI_ERR_IN_STATUS) && *outcount != MPI_UNDEFINED)
        rc = pl_finish_all(&s, *outcount, indices, rc);
    pl_scratch_done(&s, n, statuses);
    return rc;
}
