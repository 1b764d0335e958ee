# SPDX-License-Identifier: GPL-2.0
#
# Builds task_kfuncs.ko against a kernel build directory:
#
#   make KDIR=<kernel build dir>         # e.g. KDIR=$(cargo xtask kernel --print-path)
#   make KDIR=<kernel build dir> CLIPPY=1
#   make clean
#
# The kernel must be of a supported line (6.12 or 7.3; Kbuild says what
# differs), have CONFIG_RUST, CONFIG_DEBUG_INFO_BTF_MODULES and the
# put_task_struct_rcu_user() export (test-kernel/patches/<line>/0001). This Makefile is a
# convenience: it checks the kernel, builds btfgen and runs Kbuild, whose
# include of rust-kfuncs/kfuncs.mk gives the Rust kfuncs their BTF (pahole
# skips Rust) and the kfunc set its ids. A plain
# `make -C <kernel build dir> M=$PWD` does the same once btfgen is built;
# see docs/btf-pipeline.md.

KDIR ?= /lib/modules/$(shell uname -r)/build
LLVM ?= -19

# The Rust toolchain must be the one the kernel was configured with (Debian's
# rustc-web on the test kernel). Naming it explicitly keeps a rustup rustc
# that comes first in PATH out of the module build.
RUST_BINDIR ?= /usr/bin
BINDGEN ?= $(firstword $(shell command -v bindgen 2>/dev/null) $(wildcard $(HOME)/.cargo/bin/bindgen) bindgen)
# The C helpers are inlined into the Rust code by linking them into it as
# LLVM bitcode (see Kbuild). Bitcode is read only by the LLVM that wrote it
# or a newer one, so it is compiled and linked with the clang and llvm-link
# of rustc's own LLVM major version (rustc-web 1.96: LLVM 22, Debian's
# clang-22 and llvm-22), whatever clang the kernel itself was built with.
RUST_LLVM_MAJOR := $(shell $(RUST_BINDIR)/rustc --version --verbose 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
TASK_KFUNCS_BC_CC ?= clang-$(RUST_LLVM_MAJOR)
TASK_KFUNCS_BC_LINK ?= llvm-link-$(RUST_LLVM_MAJOR)

KTOOLS := RUSTC=$(RUST_BINDIR)/rustc HOSTRUSTC=$(RUST_BINDIR)/rustc \
	RUSTDOC=$(RUST_BINDIR)/rustdoc RUSTFMT=$(RUST_BINDIR)/rustfmt \
	CLIPPY_DRIVER=$(RUST_BINDIR)/clippy-driver BINDGEN=$(BINDGEN) \
	TASK_KFUNCS_BC_CC=$(TASK_KFUNCS_BC_CC) TASK_KFUNCS_BC_LINK=$(TASK_KFUNCS_BC_LINK)

CARGO ?= cargo
# The kernel lines the module is written for (Kbuild checks it too).
SUPPORTED_LINES := 6.12 7.3
RESOLVE_BTFIDS_BIN := $(KDIR)/tools/bpf/resolve_btfids/resolve_btfids

all: modules

# Fail early, with the fix, on a kernel the module cannot work with.
check-kdir:
	@test -f "$(KDIR)/Makefile" || { echo "error: KDIR=$(KDIR) is not a kernel build directory." >&2; \
		echo "  Build the test kernel with 'cargo xtask kernel' and use KDIR=\$$(cargo xtask kernel --print-path)." >&2; exit 1; }
	@test -f "$(KDIR)/.config" || { echo "error: $(KDIR) has no .config: configure and build that kernel first." >&2; exit 1; }
	@release=$$(cat "$(KDIR)/include/config/kernel.release" 2>/dev/null); line=$$(echo "$$release" | cut -d. -f1-2); \
	case " $(SUPPORTED_LINES) " in *" $$line "*) ;; *) \
		echo "error: $(KDIR) is Linux $${release:-(unknown: no include/config/kernel.release)}; task_kfuncs supports the $(SUPPORTED_LINES) lines." >&2; \
		echo "  They differ in module BTF generation, the KF_* flags, module! and the kernel crate's API (see Kbuild)." >&2; \
		echo "  Build a test kernel of one of them: cargo xtask kernel --kernel LINE." >&2; exit 1;; esac
	@grep -q '^CONFIG_RUST=y' "$(KDIR)/.config" || { echo "error: $(KDIR) was built without CONFIG_RUST=y." >&2; \
		echo "  task_kfuncs is a Rust module; use the test kernel from 'cargo xtask kernel' (test-kernel/kernel.config)." >&2; exit 1; }
	@grep -q '^CONFIG_DEBUG_INFO_BTF_MODULES=y' "$(KDIR)/.config" || { echo "error: $(KDIR) lacks CONFIG_DEBUG_INFO_BTF_MODULES=y:" >&2; \
		echo "  without module BTF the kernel cannot register kfuncs from a module." >&2; exit 1; }
	@test -f "$(KDIR)/Module.symvers" || { echo "error: $(KDIR)/Module.symvers is missing: finish building that kernel first." >&2; exit 1; }
	@grep -qw 'put_task_struct_rcu_user' "$(KDIR)/Module.symvers" || { \
		echo "error: $(KDIR) does not export put_task_struct_rcu_user()." >&2; \
		echo "  task_kfuncs releases task references exactly like bpf_task_release() and needs that export;" >&2; \
		echo "  apply test-kernel/patches/<line>/0001-exit-export-put_task_struct_rcu_user.patch to the kernel and rebuild it." >&2; exit 1; }
	@test -x "$(RESOLVE_BTFIDS_BIN)" || { echo "error: $(RESOLVE_BTFIDS_BIN) is missing: the kernel build is incomplete." >&2; exit 1; }
	@test -x "$(RUST_BINDIR)/rustc" || { echo "error: no rustc in RUST_BINDIR=$(RUST_BINDIR) (Debian: apt-get install rustc-web rust-web-src)." >&2; exit 1; }
	@command -v $(TASK_KFUNCS_BC_CC) >/dev/null && command -v $(TASK_KFUNCS_BC_LINK) >/dev/null || { \
		echo "error: $(TASK_KFUNCS_BC_CC) and $(TASK_KFUNCS_BC_LINK) are needed: rustc's LLVM is $(RUST_LLVM_MAJOR), and the C helpers" >&2; \
		echo "  are linked into the Rust code as LLVM bitcode of that version (Debian: apt-get install clang-$(RUST_LLVM_MAJOR) llvm-$(RUST_LLVM_MAJOR)," >&2; \
		echo "  or 'cargo xtask setup')." >&2; exit 1; }

# Where rust-kfuncs/kfuncs.mk finds it: target/release/btfgen.
# cargo runs without make's MAKEFLAGS: its jobserver descriptors are closed in
# a non-recursive recipe, and libbpf-sys's build script runs make again.
btfgen: FORCE
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(CARGO) build --quiet --release --package btfgen

# Kbuild's dependency files name the kernel's generated headers relative to
# the kernel build directory, so after a switch to another KDIR (e.g. the
# normal and the debug test kernel) it would keep objects and bindings made
# for the other kernel. Remember the last KDIR and start clean on a change.
KDIR_STAMP := .task_kfuncs.kdir

# What Kbuild and the Kbuild file write here. Kbuild's own clean
# (`make -C $(KDIR) M=$(CURDIR) clean`) is not used: it deletes every *.a,
# *.o and *.s below M, and cargo's target/ lies below it (build scripts'
# static libraries such as libbpf.a, incremental objects), which cargo
# then believes still built.
BUILT := *.o .*.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order \
	src/*.o src/.*.cmd src/*.bc src/generated .rust-kfuncs-flags.rs*

modules: check-kdir btfgen
	@if [ "$$(cat $(KDIR_STAMP) 2>/dev/null)" != "$(abspath $(KDIR))" ]; then \
		rm -rf $(BUILT); \
		echo "$(abspath $(KDIR))" > $(KDIR_STAMP); \
	fi
	$(MAKE) -C "$(KDIR)" M="$(CURDIR)" LLVM=$(LLVM) $(KTOOLS) modules

clean:
	rm -rf $(BUILT) $(KDIR_STAMP)

.PHONY: all modules check-kdir btfgen clean FORCE

# Format / check the module's Rust code the way the kernel does (rustfmt,
# edition 2021, the kernel's .rustfmt.toml defaults).
rustfmt:
	$(RUST_BINDIR)/rustfmt --edition 2021 src/*.rs

rustfmtcheck:
	$(RUST_BINDIR)/rustfmt --check --edition 2021 src/*.rs

.PHONY: rustfmt rustfmtcheck
