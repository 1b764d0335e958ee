# SPDX-License-Identifier: GPL-2.0
#
# rust-kfuncs: the Kbuild side of kfuncs written in Rust.
#
# A module's Kbuild pulls it in with one line, after its obj-m:
#
#   include $(src)/rust-kfuncs/kfuncs.mk
#
# and a plain `make -C $KDIR M=$PWD modules` then gives the module's kfuncs
# their BTF and their kfunc set its ids, as Kbuild does for a C module:
#
# - Rust code is built with -Zmerge-functions=disabled: LLVM would otherwise
#   turn one of two kfuncs with identical machine code into an alias of the
#   other, without DWARF, so without a prototype for btfgen.
# - Kbuild's BTF step (cmd_btf_ko in scripts/Makefile.modfinal) runs
#   `pahole -J ... x.ko` and then `$(RESOLVE_BTFIDS) -b vmlinux x.ko`. pahole
#   skips Rust (--lang_exclude=rust), so the include runs that step with
#   RESOLVE_BTFIDS set to kfunc-resolve-btfids, which first has btfgen add
#   the kfunc FUNCs (derived from the module's DWARF and its .BTF_ids
#   symbols) and then runs the kernel's resolve_btfids. The only place a
#   module's Kbuild file is read between the module link and that step is
#   scripts/Makefile.modpost (to find KBUILD_EXTRA_SYMBOLS); there the include
#   runs Makefile.modfinal itself, once Module.symvers exists. Kbuild's own
#   Makefile.modfinal run that follows finds every .ko up to date. That run
#   also gives PAHOLE kfunc-pahole, which drops the lines pahole prints for
#   the Rust-only DWARF tags it does not know.
# - A Rust module must be built with the kernel's rustc: a build with
#   another stops here with one line naming both.
#
# - The KF_* flags and BTF_SET8_KFUNCS that btf_kfunc_set! takes are the
#   target kernel's own: bindgen reads them from its <linux/btf.h> and
#   <linux/btf_ids.h> into $(obj)/.rust-kfuncs-flags.rs, which kfunc_btf.rs
#   includes (the path goes to rustc with --env-set). A flag the kernel does
#   not define (KF_TRUSTED_ARGS from 7.x on, where trusted pointer arguments
#   are the default) is a compile error, as in C.
#
# btfgen is a host program (rust-kfuncs/btfgen). The include uses
# KFUNC_BTFGEN if set, else the first of: the cargo workspace around this
# directory (../target/release/btfgen), a standalone build
# (btfgen/target/release/btfgen), `btfgen` in PATH.
#
# See rust-kfuncs/README.md and docs/btf-pipeline.md.

rust_kfuncs_dir := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))

KFUNC_BTFGEN ?= $(firstword \
	$(wildcard $(rust_kfuncs_dir)/../target/release/btfgen) \
	$(wildcard $(rust_kfuncs_dir)/btfgen/target/release/btfgen) \
	$(shell command -v btfgen 2>/dev/null))

rustflags-y += -Zmerge-functions=disabled
# kfunc_btf.rs refuses to compile without it: a module built without this
# include would load with kfuncs BPF cannot see.
rustflags-y += --cfg rust_kfuncs_mk

rust_kfuncs_flags := $(abspath $(obj))/.rust-kfuncs-flags.rs
rustflags-y += --env-set=RUST_KFUNCS_FLAGS=$(rust_kfuncs_flags)
clean-files += .rust-kfuncs-flags.rs
# For kfunc_btf.rs's KF_TRUSTED: kernels without KF_TRUSTED_ARGS trust
# pointer arguments by default.
rustflags-$(if $(shell grep -qw KF_TRUSTED_ARGS $(srctree)/include/linux/btf.h 2>/dev/null || echo y),y) += \
	--cfg rust_kfuncs_trusted_by_default

# Checks that only matter when building (not for clean or modules_install).
ifneq ($(filter %/scripts/Makefile.build %/scripts/Makefile.modpost,$(MAKEFILE_LIST)),)
# A Rust module must be built by the rustc that built the kernel's crates;
# any other stops with a screenful of E0514. Say so in one line instead.
rust_kfuncs_rustc := $(shell $(RUSTC) --version 2>/dev/null)
rust_kfuncs_kernel_rustc := $(patsubst "%",%,$(CONFIG_RUSTC_VERSION_TEXT))
ifneq ($(rust_kfuncs_rustc),$(rust_kfuncs_kernel_rustc))
$(error rust-kfuncs: RUSTC=$(RUSTC) is "$(or $(rust_kfuncs_rustc),not runnable)" but the kernel in \
	$(abspath $(objtree)) was built with "$(rust_kfuncs_kernel_rustc)": pass that rustc to make as \
	RUSTC=<path> HOSTRUSTC=<path>)
endif
ifneq ($(CONFIG_DEBUG_INFO_BTF_MODULES),y)
$(error rust-kfuncs: the kernel in $(objtree) lacks CONFIG_DEBUG_INFO_BTF_MODULES=y; \
	without module BTF the kernel cannot register kfuncs from a module)
endif
ifeq ($(KFUNC_BTFGEN),)
$(error rust-kfuncs: btfgen not found; build it once with \
	`cargo build --release --manifest-path $(rust_kfuncs_dir)/btfgen/Cargo.toml` \
	or set KFUNC_BTFGEN=<path to btfgen>)
endif
endif

# The flags, generated while Kbuild reads this directory's Kbuild file, before
# any object is built. The file is replaced only when its contents change, so
# that rustc's dependency tracking rebuilds only what the kernel's flags
# changed (another KDIR, a newer kernel).
ifneq ($(filter %/scripts/Makefile.build,$(MAKEFILE_LIST)),)
rust_kfuncs_flags_ok := $(shell \
	$(BINDGEN) $(srctree)/include/linux/btf_ids.h --use-core \
		--allowlist-var 'KF_.*' --allowlist-var BTF_SET8_KFUNCS \
		-o $(rust_kfuncs_flags).tmp -- $(LINUXINCLUDE) $(KBUILD_CPPFLAGS) \
		$(filter-out -Wp$(comma)% -W%,$(KBUILD_CFLAGS)) \
		-include $(srctree)/include/linux/compiler_types.h \
		-include $(srctree)/include/linux/btf.h \
		-D__KERNEL__ -D__BINDGEN__ -DMODULE -fno-builtin -w \
		>$(rust_kfuncs_flags).log 2>&1 && \
	grep -q 'pub const KF_ACQUIRE' $(rust_kfuncs_flags).tmp && \
	{ cmp -s $(rust_kfuncs_flags).tmp $(rust_kfuncs_flags) || \
	  mv -f $(rust_kfuncs_flags).tmp $(rust_kfuncs_flags); } && \
	rm -f $(rust_kfuncs_flags).tmp $(rust_kfuncs_flags).log && echo ok)
ifneq ($(rust_kfuncs_flags_ok),ok)
$(error rust-kfuncs: bindgen could not read the KF_* flags from $(srctree)/include/linux/btf.h \
	(BINDGEN=$(BINDGEN)); its messages are in $(rust_kfuncs_flags).log)
endif
endif

ifneq ($(filter %/scripts/Makefile.modpost,$(MAKEFILE_LIST)),)
ifneq ($(KBUILD_MODPOST_NOFINAL),1)
ifeq ($(wildcard $(objtree)/vmlinux),)
$(error rust-kfuncs: $(objtree)/vmlinux is missing: kfunc BTF is split BTF on top of \
	vmlinux's, so the kernel build directory must keep vmlinux)
endif

# The target Makefile.modpost writes the module's symbols to: 6.x runs in the
# kernel's build directory and names it $(KBUILD_EXTMOD)/Module.symvers, 7.x
# runs in the module's (output) directory and names it Module.symvers.
rust_kfuncs_symvers := $(if $(filter $(CURDIR),$(abspath $(objtree))), \
	$(KBUILD_EXTMOD)/Module.symvers,Module.symvers)

__modpost: rust_kfuncs_modfinal
PHONY += rust_kfuncs_modfinal
rust_kfuncs_modfinal: $(rust_kfuncs_symvers)
	$(Q)$(MAKE) -f $(srctree)/scripts/Makefile.modfinal \
		PAHOLE="$(CONFIG_SHELL) $(rust_kfuncs_dir)/kfunc-pahole $(PAHOLE)" \
		RESOLVE_BTFIDS="$(CONFIG_SHELL) $(rust_kfuncs_dir)/kfunc-resolve-btfids \
			$(KFUNC_BTFGEN) $(OBJCOPY) $(RESOLVE_BTFIDS)"
endif
endif
