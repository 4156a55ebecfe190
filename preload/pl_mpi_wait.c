/* pl_mpi_wait: Wait/Test and their any/all/some forms (docs/mpi.md).
 *
 * While no request of ours is pending these are the real calls and
 * nothing else. Otherwise the handles are remembered before the real call
 * (MPI sets completed ones to MPI_REQUEST_NULL), statuses are always
 * collected (a token's real size goes there), and each completed request
 * is finished by pl_mpi_complete. */
#include "pl_mpi.h"

#ifdef PL_HAVE_MPI
#include "pl_mpi_real.h"

#include <stdlib.h>
#include <string.h>
#define PL_MPI_STACK 32

/* Scratch arrays for n requests: on the stack when small. */
typedef struct pl_scratch {
    MPI_Request hs_small[PL_MPI_STACK];
    MPI_Status st_small[PL_MPI_STACK];
    int err_small[PL_MPI_STACK];
    MPI_Request *hs;
    MPI_Status *st;
    int *err;
} pl_scratch;

static bool pl_scratch_init(pl_scratch *s, int n, const MPI_Request *reqs, MPI_Status *user)
{
    size_t k = n > 0 ? (size_t)n : 1;
    bool small = k <= PL_MPI_STACK;
    s->hs = small ? s->hs_small : malloc(k * sizeof *s->hs);
    s->err = small ? s->err_small : malloc(k * sizeof *s->err);
    s->st = user != MPI_STATUSES_IGNORE ? user : small ? s->st_small : malloc(k * sizeof *s->st);
    if (!s->hs || !s->err || !s->st)
        return false;
    if (n > 0)
        memcpy(s->hs, reqs, (size_t)n * sizeof *s->hs);
    return true;
}

static void pl_scratch_free(pl_scratch *s, MPI_Status *user)
{
    if (s->hs != s->hs_small)
        free(s->hs);
    if (s->err != s->err_small)
        free(s->err);
    if (s->st != user && s->st != s->st_small)
        free(s->st);
}

int pl_mpi_wait(MPI_Request *req, MPI_Status *status)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (!pl_mpi_have_reqs())
        return R(Wait)(req, status);
    MPI_Request h = *req;
    MPI_Status st;
    int rc = R(Wait)(req, &st);
    if (rc == MPI_SUCCESS)
        rc = pl_mpi_complete(h, &st);
    if (status != MPI_STATUS_IGNORE)
        *status = st;
    return rc;
}

int pl_mpi_test(MPI_Request *req, int *flag, MPI_Status *status)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (!pl_mpi_have_reqs())
        return R(Test)(req, flag, status);
    MPI_Request h = *req;
    MPI_Status st;
    int rc = R(Test)(req, flag, &st);
    if (rc == MPI_SUCCESS && *flag)
        rc = pl_mpi_complete(h, &st);
    if (status != MPI_STATUS_IGNORE)
        *status = st;
    return rc;
}

int pl_mpi_waitany(int n, MPI_Request reqs[], int *index, int *flag, MPI_Status *status)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (!pl_mpi_have_reqs())
        return flag ? R(Testany)(n, reqs, index, flag, status)
                    : R(Waitany)(n, reqs, index, status);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, MPI_STATUSES_IGNORE)) {
        pl_scratch_free(&s, MPI_STATUSES_IGNORE);
        return MPI_ERR_NO_MEM;
    }
    MPI_Status st;
    int rc = flag ? R(Testany)(n, reqs, index, flag, &st) : R(Waitany)(n, reqs, index, &st);
    if (rc == MPI_SUCCESS && (!flag || *flag) && *index != MPI_UNDEFINED)
        rc = pl_mpi_complete(s.hs[*index], &st);
    pl_scratch_free(&s, MPI_STATUSES_IGNORE);
    if (status != MPI_STATUS_IGNORE)
        *status = st;
    return rc;
}

/* Finishes the completed requests idx[0..k) (NULL: 0..k), whose statuses
 * are st[0..k). rc is the real call's return; MPI_ERR_IN_STATUS entries
 * MPI already failed are left alone. Our errors turn the result into
 * MPI_ERR_IN_STATUS with every status's MPI_ERROR set. */
static int pl_finish(pl_scratch *s, int k, const int *idx, int rc)
{
    bool bad = false;
    for (int i = 0; i < k; i++) {
        s->err[i] = MPI_SUCCESS;
        if (rc == MPI_ERR_IN_STATUS && s->st[i].MPI_ERROR != MPI_SUCCESS) {
            s->err[i] = s->st[i].MPI_ERROR;
            continue;
        }
        s->err[i] = pl_mpi_complete(s->hs[idx ? idx[i] : i], &s->st[i]);
        bad |= s->err[i] != MPI_SUCCESS;
    }
    if (!bad)
        return rc;
    for (int i = 0; i < k; i++)
        s->st[i].MPI_ERROR = s->err[i];
    return MPI_ERR_IN_STATUS;
}

int pl_mpi_waitall(int n, MPI_Request reqs[], int *flag, MPI_Status statuses[])
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (!pl_mpi_have_reqs())
        return flag ? R(Testall)(n, reqs, flag, statuses) : R(Waitall)(n, reqs, statuses);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, statuses)) {
        pl_scratch_free(&s, statuses);
        return MPI_ERR_NO_MEM;
    }
    int rc = flag ? R(Testall)(n, reqs, flag, s.st) : R(Waitall)(n, reqs, s.st);
    if ((rc == MPI_SUCCESS || rc == MPI_ERR_IN_STATUS) && (!flag || *flag))
        rc = pl_finish(&s, n, NULL, rc);
    pl_scratch_free(&s, statuses);
    return rc;
}

int pl_mpi_waitsome(int n, MPI_Request reqs[], int *outcount, int indices[],
                    MPI_Status statuses[], bool test)
{
    if (!pl_mpi_bind())
        return MPI_ERR_INTERN;
    if (!pl_mpi_have_reqs())
        return test ? R(Testsome)(n, reqs, outcount, indices, statuses)
                    : R(Waitsome)(n, reqs, outcount, indices, statuses);
    pl_scratch s;
    if (!pl_scratch_init(&s, n, reqs, statuses)) {
        pl_scratch_free(&s, statuses);
        return MPI_ERR_NO_MEM;
    }
    int rc = test ? R(Testsome)(n, reqs, outcount, indices, s.st)
                  : R(Waitsome)(n, reqs, outcount, indices, s.st);
    if ((rc == MPI_SUCCESS || rc == MPI_ERR_IN_STATUS) && *outcount != MPI_UNDEFINED)
        rc = pl_finish(&s, *outcount, indices, rc);
    pl_scratch_free(&s, statuses);
    return rc;
}

#endif /* PL_HAVE_MPI */
