# psinterpose build. Targets: all test demo bench install clean (DESIGN §1).
# Outputs go to build/ only.

PREFIX  ?= /usr/local
VERSION := 0.1.0
B       := build

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
CPPFLAGS_ALL := -D_GNU_SOURCE -DPSI_VERSION=\"$(VERSION)\" -Ipolicy -Istore -Ipreload
# The core and the preload library are built with hidden visibility: the .so
# exports only the hooks marked PL_EXPORT (DESIGN §1).
PICFLAGS := -fPIC -fvisibility=hidden
LIBS    := -lxxhash -ldl -lpthread -lm

CORE_SRC    := $(sort $(wildcard store/*.c policy/*.c))
# The MPI logic is compiled once per MPI ABI (below), not with the rest.
MPI_LOGIC_SRC := preload/pl_mpi.c preload/pl_mpi_ops.c preload/pl_mpi_recv.c \
                 preload/pl_mpi_send.c preload/pl_mpi_wait.c
PRELOAD_SRC := $(filter-out $(MPI_LOGIC_SRC),$(sort $(wildcard preload/*.c)))
TOOLS_SRC   := $(sort $(wildcard tools/*.c))
UNIT_SRC    := $(sort $(wildcard tests/unit/test_*.c))
HDRS        := $(wildcard store/*.h policy/*.h preload/*.h tools/*.h)

CORE_OBJ    := $(CORE_SRC:%.c=$(B)/obj/%.o)
PRELOAD_OBJ := $(PRELOAD_SRC:%.c=$(B)/obj/%.o)
TOOLS_OBJ   := $(TOOLS_SRC:%.c=$(B)/obj/%.o)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

# The sanitizer build of the core, preload objects and unit tests.
SAN_FLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_CORE    := $(CORE_SRC:%.c=$(B)/san/%.o)
SAN_PRELOAD := $(PRELOAD_SRC:%.c=$(B)/san/%.o)
SAN_UNIT    := $(UNIT_SRC:tests/unit/%.c=$(B)/san/tests/%)

.PHONY: all deps test unit unit-san integration integration-san demo bench install uninstall clean

# Objects reached only through pattern rules would count as intermediate and
# be deleted after a link; keep every build product.
.SECONDARY:

all: $(B)/libpsinterpose.so $(B)/psi

deps:
	@tools/deps.sh

# Static pattern rules: every object is an explicit target, so make never
# has to guess which pattern rule can build a test's prerequisites.
$(CORE_OBJ) $(PRELOAD_OBJ) $(TOOLS_OBJ): $(B)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CPPFLAGS) $(CFLAGS) $(WARN) $(PICFLAGS) -c $< -o $@

# MPI (docs/mpi.md). The logic (MPI_LOGIC_SRC) is compiled against each
# ABI's mpi.h that pkg-config finds: MPICH's (libmpich-dev) and Open MPI's
# (libopenmpi-dev). Build time only: the library binds PMPI_* at run time
# and has no link-time MPI dependency. Each ABI's objects are linked into
# one relocatable object whose names are all made local except its table,
# pl_mpi_ops_<abi> (objcopy -G), so both copies live in the library with
# the same source names. MPI_ABIS="mpich" (say) builds fewer; with none,
# the hooks pass every MPI call through.
MPI_ABIS ?= mpich ompi
MPI_PC_mpich := mpich
MPI_PC_ompi  := ompi-c
MPI_BUILT := $(foreach a,$(MPI_ABIS),$(if $(shell pkg-config --exists $(MPI_PC_$(a)) 2>/dev/null && echo y),$(a)))
# MPI_CFLAGS_<abi>: where that ABI's mpi.h is, asked of pkg-config once.
$(foreach a,$(MPI_BUILT),$(eval MPI_CFLAGS_$(a) := $(shell pkg-config --cflags $(MPI_PC_$(a)))))
MPI_OBJ     := $(MPI_BUILT:%=$(B)/obj/mpi-%.o)
SAN_MPI_OBJ := $(MPI_BUILT:%=$(B)/san/mpi-%.o)
# The hooks are built for the set of ABIs; the stamp's name is that set,
# so a new set rebuilds them.
MPI_STAMP := $(B)/obj/mpi-abis$(subst $(eval) ,,$(MPI_BUILT:%=-%)).stamp
$(MPI_STAMP):
	@mkdir -p $(dir $@) && rm -f $(B)/obj/mpi-abis*.stamp && touch $@
$(B)/obj/preload/pl_hooks_mpi.o $(B)/san/preload/pl_hooks_mpi.o: $(MPI_STAMP)
$(B)/obj/preload/pl_hooks_mpi.o $(B)/san/preload/pl_hooks_mpi.o: \
    CPPFLAGS += $(if $(filter mpich,$(MPI_BUILT)),-DPL_HAVE_MPICH) $(if $(filter ompi,$(MPI_BUILT)),-DPL_HAVE_OMPI)

# mpi_abi,ABI,DIR,FLAGS,TESTDIR: the logic objects of ABI under DIR (obj
# or san), and its unit test of pl_mpi_abi.h (tests/unit/abi_pl_mpi.c)
# under TESTDIR.
define mpi_abi
$$(MPI_LOGIC_SRC:%.c=$$(B)/$(2)/mpi/$(1)/%.o): $$(B)/$(2)/mpi/$(1)/%.o: %.c $$(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS_ALL) $$(MPI_CFLAGS_$(1)) $$(CPPFLAGS) $(3) $$(WARN) $$(PICFLAGS) -c $$< -o $$@
$$(B)/$(2)/mpi-$(1).o: $$(MPI_LOGIC_SRC:%.c=$$(B)/$(2)/mpi/$(1)/%.o)
	$$(LD) -r -o $$@.tmp $$^
	objcopy -G pl_mpi_ops_$(1) $$@.tmp $$@ && rm -f $$@.tmp
$$(B)/$(4)/test_mpi_abi_$(1): tests/unit/abi_pl_mpi.c $$(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS_ALL) $$(MPI_CFLAGS_$(1)) $(3) $$(WARN) -o $$@ $$< -lcmocka
endef
$(foreach a,$(MPI_BUILT),$(eval $(call mpi_abi,$(a),obj,$$(CFLAGS),tests)))
$(foreach a,$(MPI_BUILT),$(eval $(call mpi_abi,$(a),san,$$(SAN_FLAGS),san/tests)))
MPI_UNIT     := $(MPI_BUILT:%=$(B)/tests/test_mpi_abi_%)
SAN_MPI_UNIT := $(MPI_BUILT:%=$(B)/san/tests/test_mpi_abi_%)

# The AVX2 build of xxh3 (store/psi_hash.h): this one file only, called
# only after the CPU said it has AVX2.
ifeq ($(shell uname -m),x86_64)
$(B)/obj/store/psi_hash_avx2.o $(B)/san/store/psi_hash_avx2.o: CPPFLAGS += -mavx2
endif

$(SAN_CORE) $(SAN_PRELOAD): $(B)/san/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CPPFLAGS) $(SAN_FLAGS) $(WARN) $(PICFLAGS) -c $< -o $@

$(B)/libpsicore.a: $(CORE_OBJ)
	@mkdir -p $(B)
	rm -f $@ && ar rcs $@ $^

$(B)/libpsinterpose.so: $(PRELOAD_OBJ) $(MPI_OBJ) $(B)/libpsicore.a
	$(CC) -shared -o $@ $(PRELOAD_OBJ) $(MPI_OBJ) $(B)/libpsicore.a $(LDFLAGS) $(LIBS) \
	    -Wl,-z,defs -Wl,-soname,libpsinterpose.so

# The ASan+UBSan build of the preload library, for integration-san.
$(B)/san/libpsinterpose.so: $(SAN_PRELOAD) $(SAN_MPI_OBJ) $(SAN_CORE)
	$(CC) -shared -fsanitize=address,undefined -o $@ $(SAN_PRELOAD) $(SAN_MPI_OBJ) $(SAN_CORE) \
	    $(LDFLAGS) $(LIBS) \
	    -Wl,-z,defs -Wl,-soname,libpsinterpose.so

$(B)/psi: $(TOOLS_OBJ) $(B)/libpsicore.a
	$(CC) -o $@ $(TOOLS_OBJ) $(B)/libpsicore.a $(LDFLAGS) $(LIBS)

# Unit tests: test_pl_*.c also link the preload objects except the hook
# entry points (pl_hooks_*.c), so state machines are tested without
# LD_PRELOAD; the others link the core only.
UNIT_PRELOAD := $(filter-out $(B)/obj/preload/pl_hooks_%.o,$(PRELOAD_OBJ))
PL_UNIT_BIN  := $(filter $(B)/tests/test_pl_%,$(UNIT_BIN))
CORE_UNIT_BIN := $(filter-out $(PL_UNIT_BIN),$(UNIT_BIN))
$(PL_UNIT_BIN): $(B)/tests/%: tests/unit/%.c $(UNIT_PRELOAD) $(B)/libpsicore.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) -o $@ $< $(UNIT_PRELOAD) $(B)/libpsicore.a -lcmocka $(LIBS)

$(CORE_UNIT_BIN): $(B)/tests/%: tests/unit/%.c $(B)/libpsicore.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS) $(WARN) -o $@ $< $(B)/libpsicore.a -lcmocka $(LIBS)

SAN_UNIT_PRELOAD := $(filter-out $(B)/san/preload/pl_hooks_%.o,$(SAN_PRELOAD))
SAN_PL_UNIT   := $(filter $(B)/san/tests/test_pl_%,$(SAN_UNIT))
SAN_CORE_UNIT := $(filter-out $(SAN_PL_UNIT),$(SAN_UNIT))
$(SAN_PL_UNIT): $(B)/san/tests/%: tests/unit/%.c $(SAN_UNIT_PRELOAD) $(SAN_CORE) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(SAN_FLAGS) $(WARN) -o $@ $< $(SAN_UNIT_PRELOAD) $(SAN_CORE) -lcmocka $(LIBS)

$(SAN_CORE_UNIT): $(B)/san/tests/%: tests/unit/%.c $(SAN_CORE) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(SAN_FLAGS) $(WARN) -o $@ $< $(SAN_CORE) -lcmocka $(LIBS)

unit: $(UNIT_BIN) $(MPI_UNIT)
	@tests/run-unit.sh $(UNIT_BIN) $(MPI_UNIT)

unit-san: $(SAN_UNIT) $(SAN_MPI_UNIT)
	@tests/run-unit.sh $(SAN_UNIT) $(SAN_MPI_UNIT)

integration: all
	@tests/integration/run.sh

# The integration suite with the sanitizer build preloaded into unsanitized
# programs: libasan must come first in LD_PRELOAD; leaks in the host
# programs (python, iperf3) are not ours to report. SAN_SKIP: tests whose
# programs cannot run with ASan loaded: curl hangs in setlocale at start-up
# with libasan preloaded, even without our library (t_http, t_nginx).
SAN_SKIP ?= t_http t_nginx
integration-san: all $(B)/san/libpsinterpose.so
	@PSI_TEST_LIB=$(CURDIR)/$(B)/san/libpsinterpose.so \
	 PSI_TEST_PRELOAD_EXTRA="$$($(CC) -print-file-name=libasan.so)" \
	 PSI_TEST_SKIP="$(SAN_SKIP)" \
	 ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0:abort_on_error=1 \
	 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	 tests/integration/run.sh

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit unit-san integration integration-san

demo: deps
	@$(MAKE) --no-print-directory all
	@tests/demo/demo.sh

# Benchmarks print markdown tables (docs/performance.md); not part of test.
bench: all
	@tests/bench/run.sh
	@PSI_STORE_SERVER_BIN=$(B)/psi tests/bench/stores.sh "file:///dev/shm/psi-bench-file" "shm://" "zmq://"
	@tests/bench/redis.sh
	@tests/bench/zmq.sh
	@tests/bench/mpi.sh
	@if command -v mpirun.openmpi >/dev/null; then PSI_BENCH_MPI=openmpi tests/bench/mpi.sh; fi

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(B)/libpsinterpose.so $(DESTDIR)$(PREFIX)/lib/libpsinterpose.so
	install -m 0755 $(B)/psi $(DESTDIR)$(PREFIX)/bin/psi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libpsinterpose.so $(DESTDIR)$(PREFIX)/bin/psi

clean:
	rm -rf $(B)
