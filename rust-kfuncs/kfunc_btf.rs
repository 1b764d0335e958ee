// SPDX-License-Identifier: GPL-2.0

//! Kfunc id sets declared from Rust: the macro file of the rust-kfuncs toolkit.
//!
//! The Rust twin of the kfunc part of `include/linux/btf_ids.h`: [`btf_kfunc_set!`] emits the same
//! `.BTF_ids` layout as `BTF_KFUNCS_START()` / `BTF_ID_FLAGS(func, ...)` / `BTF_KFUNCS_END()`, so
//! the kernel's `resolve_btfids` fills in the BTF ids and sorts the set when the module is linked,
//! exactly as it does for a C module, and [`BtfKfuncSet::register`] hands the set to
//! `register_btf_kfunc_id_set()`. The flags are the target kernel's own (`include/linux/btf.h`).
//!
//! A module mounts this file, unchanged, as the crate-root module `kfunc_btf` (the macro's
//! expansion names `$crate::kfunc_btf`):
//!
//! ```ignore
//! #[path = "../rust-kfuncs/kfunc_btf.rs"]
//! mod kfunc_btf;
//! ```
//!
//! [`btf_dtor_list!`] is the twin of a `BTF_ID_LIST` of `BTF_ID(struct, T)` / `BTF_ID(func, dtor)`
//! pairs, and [`BtfDtorList::register`] hands it to `register_btf_id_dtor_kfuncs()`: a struct of
//! the module's own can then be stored in BPF maps as a referenced `__kptr`.
//!
//! Everything but the registration and [`prog_type`] depends on `core` only, so host tests
//! include the file with `#[path]` and compare its output with what the C macros produce; those
//! need the kernel crate and exist only in module builds (`cfg(MODULE)`, which Kbuild sets).
//!
//! C headers: [include/linux/btf_ids.h](srctree/include/linux/btf_ids.h),
//! [include/linux/btf.h](srctree/include/linux/btf.h)

// A module's sets use only some of the flags. `rust_kfuncs_trusted_by_default` is set by
// kfuncs.mk in module builds; host builds do not know it.
#![allow(dead_code, unexpected_cfgs)]

// Kbuild gives a Rust module no kfunc BTF and no resolved ids: without the include the module
// would build, warn about unresolved symbols and load with kfuncs BPF cannot call.
#[cfg(all(MODULE, not(rust_kfuncs_mk)))]
compile_error!(
    "rust-kfuncs: this module's Kbuild lacks `include $(src)/rust-kfuncs/kfuncs.mk` (the path to \
     the toolkit's kfuncs.mk, after obj-m): without it the kfuncs get no BTF and no ids"
);

/// The `KF_*` flags and `BTF_SET8_KFUNCS` of the kernel the module is built for.
///
/// In module builds they are the kernel's own definitions (`include/linux/btf.h`,
/// `include/linux/btf_ids.h`), which `kfuncs.mk` has bindgen write to a file whose path reaches
/// rustc as `RUST_KFUNCS_FLAGS`: no table here can fall behind a kernel. A flag the kernel does
/// not have is a compile error, as in C (`KF_TRUSTED_ARGS` is gone from 7.x, where pointer
/// arguments are trusted unless `KF_RCU` says otherwise).
#[cfg(MODULE)]
#[allow(unreachable_pub, missing_docs)]
mod flags {
    include!(env!("RUST_KFUNCS_FLAGS"));
}

/// Host builds (the toolkit's own tests, which compare the expansion with the C macros' and
/// these values with the kernel headers they build against): the 6.12 definitions.
#[cfg(not(MODULE))]
mod flags {
    /// `struct btf_id_set8.flags`: the set holds kfuncs.
    pub(crate) const BTF_SET8_KFUNCS: u32 = 1 << 0;
    pub(crate) const KF_ACQUIRE: u32 = 1 << 0;
    pub(crate) const KF_RELEASE: u32 = 1 << 1;
    pub(crate) const KF_RET_NULL: u32 = 1 << 2;
    pub(crate) const KF_TRUSTED_ARGS: u32 = 1 << 4;
    pub(crate) const KF_SLEEPABLE: u32 = 1 << 5;
    pub(crate) const KF_DESTRUCTIVE: u32 = 1 << 6;
    pub(crate) const KF_RCU: u32 = 1 << 7;
    pub(crate) const KF_ITER_NEW: u32 = 1 << 8;
    pub(crate) const KF_ITER_NEXT: u32 = 1 << 9;
    pub(crate) const KF_ITER_DESTROY: u32 = 1 << 10;
    pub(crate) const KF_RCU_PROTECTED: u32 = 1 << 11;
}

pub(crate) use flags::*;

/// The kfunc's pointer arguments must be trusted, on any kernel line: `KF_TRUSTED_ARGS` where the
/// kernel has that flag (6.x), no flag from 7.x on, where pointer arguments are trusted unless the
/// kfunc has `KF_RCU` (`kfuncs.mk` sets `rust_kfuncs_trusted_by_default` there).
#[cfg(not(all(MODULE, rust_kfuncs_trusted_by_default)))]
pub(crate) const KF_TRUSTED: u32 = KF_TRUSTED_ARGS;
/// See the other definition: this kernel trusts pointer arguments by default.
#[cfg(all(MODULE, rust_kfuncs_trusted_by_default))]
pub(crate) const KF_TRUSTED: u32 = 0;

/// A kfunc id set emitted into `.BTF_ids` by [`btf_kfunc_set!`].
///
/// It stands for the C `struct btf_id_set8` that `BTF_KFUNCS_START(name)` declares; register it
/// with [`BtfKfuncSet::register`].
///
/// # Invariants
///
/// `start` is the address of the set's `struct btf_id_set8` in the `.BTF_ids` section, which
/// lives as long as the module (or program) that contains it and holds [`BtfKfuncSet::len`]
/// entries.
pub(crate) struct BtfKfuncSet {
    start: *const u8,
    len: u32,
}

// SAFETY: the set is plain data that is written only at build time (by `resolve_btfids`); sharing
// its address between threads is harmless.
unsafe impl Sync for BtfKfuncSet {}

impl BtfKfuncSet {
    /// Wraps the address of a set emitted by [`btf_kfunc_set!`]; not meant to be called directly.
    ///
    /// # Safety
    ///
    /// `start` must be the address of a `struct btf_id_set8` with `len` entries in `.BTF_ids`
    /// that lives for `'static`.
    #[doc(hidden)]
    pub(crate) const unsafe fn from_raw(start: *const u8, len: u32) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self { start, len }
    }

    /// The address of the set, for `struct btf_kfunc_id_set.set`.
    ///
    /// The kernel only reads through this pointer; the C field is `struct btf_id_set8 *`
    /// without `const`, hence `*mut`.
    pub(crate) fn as_ptr(&self) -> *mut core::ffi::c_void {
        self.start.cast_mut().cast()
    }

    /// The number of kfuncs in the set.
    pub(crate) const fn len(&self) -> u32 {
        self.len
    }

    /// Whether the set has no kfuncs.
    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A destructor list emitted into `.BTF_ids` by [`btf_dtor_list!`].
///
/// It stands for the C array of `struct btf_id_dtor_kfunc` that a module fills from a
/// `BTF_ID_LIST` of `BTF_ID(struct, T)` / `BTF_ID(func, dtor)` pairs; register it with
/// [`BtfDtorList::register`].
///
/// # Invariants
///
/// `start` is the address of `len` pairs of `u32` BTF ids (struct, then destructor) in the
/// `.BTF_ids` section, which lives as long as the module that contains it.
pub(crate) struct BtfDtorList {
    start: *const u8,
    len: u32,
    /// Whether [`BtfDtorList::register`] ran: the kernel takes one registration per module.
    registered: core::sync::atomic::AtomicBool,
}

// SAFETY: as for `BtfKfuncSet`: the list is plain data written only at build time, and
// `registered` is atomic.
unsafe impl Sync for BtfDtorList {}

impl BtfDtorList {
    /// Wraps the address of a list emitted by [`btf_dtor_list!`]; not meant to be called
    /// directly.
    ///
    /// # Safety
    ///
    /// `start` must be the address of `len` pairs of `u32` ids in `.BTF_ids` that lives for
    /// `'static`.
    #[doc(hidden)]
    pub(crate) const unsafe fn from_raw(start: *const u8, len: u32) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self {
            start,
            len,
            registered: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The number of (struct, destructor) pairs.
    pub(crate) const fn len(&self) -> u32 {
        self.len
    }

    /// Whether the list is empty.
    pub(crate) const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Kfunc arguments whose C type is narrower than a register, or has invalid bit patterns.
///
/// A BPF program passes every kfunc argument in a 64-bit register, and neither the 6.12 verifier
/// nor the x86-64 JIT narrows it: `check_kfunc_args()` only requires a scalar, with any value.
/// A Rust `u8`, `i16` or `bool` parameter is not sound there: for `extern "C"` functions rustc,
/// like clang, tells LLVM that the caller zero- or sign-extended 8- and 16-bit arguments, and a
/// `bool` other than 0 or 1 is undefined behaviour. btfgen therefore refuses those parameter
/// types (and Rust enums), and kfuncs take these wrappers instead. Each holds the whole register;
/// BTF, and so the BPF program, sees the C type named in its documentation, and [`get`] reads the
/// low bytes of that size, as a C callee that does not rely on extension (GCC's code) would.
/// `i32`/`u32` need no wrapper: x86-64 code never assumes anything of a 32-bit argument's upper
/// half.
///
/// [`get`]: KfuncU8::get
macro_rules! narrow_arg {
    ($(#[$meta:meta])* $name:ident, $ty:ty, $c:literal) => {
        $(#[$meta])*
        #[doc = ::core::concat!("BTF and the BPF program see `", $c, "`.")]
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $name(u64);

        impl $name {
            #[doc = ::core::concat!("The argument's value: the low bytes of the register, as `",
                ::core::stringify!($ty), "`.")]
            pub(crate) const fn get(self) -> $ty {
                self.0 as $ty
            }
        }
    };
}

narrow_arg!(
    /// An `unsigned char` (`u8`) kfunc argument.
    KfuncU8, u8, "unsigned char"
);
narrow_arg!(
    /// A `signed char` (`s8`) kfunc argument.
    KfuncI8, i8, "signed char"
);
narrow_arg!(
    /// An `unsigned short` (`u16`) kfunc argument.
    KfuncU16, u16, "unsigned short"
);
narrow_arg!(
    /// A `short` (`s16`) kfunc argument.
    KfuncI16, i16, "short"
);

/// A `bool` kfunc argument; BTF and the BPF program see `_Bool`.
///
/// True when the low byte of the register (the size of C's `_Bool`) is not zero.
#[repr(transparent)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct KfuncBool(u64);

impl KfuncBool {
    /// The argument's value: whether its low byte is not zero.
    pub(crate) const fn get(self) -> bool {
        self.0 as u8 != 0
    }
}

/// An enum kfunc argument: BTF and the BPF program see `enum E` with `E`'s variants.
///
/// `E` is a fieldless `#[repr(u32)]` Rust enum named and valued as the C enum should be (btfgen
/// writes its BTF from the DWARF of `E`). The register may hold any value, so the argument is
/// kept raw: [`KfuncEnum::get`] gives `None` for a value that is no variant of `E`.
#[repr(transparent)]
pub(crate) struct KfuncEnum<E>(u64, core::marker::PhantomData<E>);

impl<E> Clone for KfuncEnum<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for KfuncEnum<E> {}

impl<E> KfuncEnum<E> {
    /// The low 32 bits of the register (the size of a C enum), as they came.
    pub(crate) const fn raw(self) -> u32 {
        self.0 as u32
    }
}

impl<E: TryFrom<u32>> KfuncEnum<E> {
    /// The variant of `E` the argument names, or `None` if it names none.
    pub(crate) fn get(self) -> Option<E> {
        E::try_from(self.raw()).ok()
    }
}

/// Registration with the kernel; module builds only (the kernel crate is not there on the host).
#[cfg(MODULE)]
mod register {
    use super::{BtfDtorList, BtfKfuncSet};
    use kernel::bindings;
    use kernel::error::{code::*, to_result, Result};
    use kernel::ThisModule;

    /// The fix for every build mistake the checks below catch.
    const FIX: &str = "build the module with Kbuild and `include $(src)/rust-kfuncs/kfuncs.mk` \
        in its Kbuild, which runs btfgen and resolve_btfids";

    /// The `u32` word `i` of the `.BTF_ids` data at `start`.
    ///
    /// # Safety
    ///
    /// `start` must be 4-byte aligned and readable for `4 * (i + 1)` bytes.
    unsafe fn word(start: *const u8, i: usize) -> u32 {
        // SAFETY: guaranteed by the caller.
        unsafe { start.cast::<u32>().add(i).read() }
    }

    /// Refuses a module whose BTF the kernel does not have: the registrations would then
    /// succeed with only a warning, and BPF would see none of the module's kfuncs.
    fn check_module_btf(module: &'static ThisModule) -> Result {
        // SAFETY: `module` is this module, alive while its init runs; btfgen checks at build
        // time that bindgen's layout of `struct module` is vmlinux's.
        if unsafe { (*module.as_ptr()).btf_data_size } == 0 {
            kernel::pr_err!(
                "the module has no BTF (.BTF section): BPF could not see its kfuncs; {}\n",
                FIX
            );
            return Err(ENOENT);
        }
        Ok(())
    }

    impl BtfKfuncSet {
        /// Refuses a set BPF could not use: one whose count `resolve_btfids` never filled in
        /// (it did not run on the module) or whose ids it left at 0 (the kfuncs are missing from
        /// the module's BTF: btfgen did not run).
        fn check(&self) -> Result {
            // SAFETY: the set is a 4-byte aligned `struct btf_id_set8` of `len` entries, 2 + 2 *
            // `len` words (type invariant).
            let cnt = unsafe { word(self.start, 0) };
            if cnt != self.len {
                kernel::pr_err!(
                    "the kfunc id set holds {} of {} kfuncs: resolve_btfids did not process the module; {}\n",
                    cnt,
                    self.len,
                    FIX
                );
                return Err(EINVAL);
            }
            for i in 0..self.len as usize {
                // SAFETY: as above; entry `i` is words 2 + 2 * i (id) and 3 + 2 * i (flags).
                if unsafe { word(self.start, 2 + 2 * i) } == 0 {
                    kernel::pr_err!(
                        "kfunc {} of the id set has no BTF id: the module's BTF lacks its kfuncs; {}\n",
                        i,
                        FIX
                    );
                    return Err(ENOENT);
                }
            }
            Ok(())
        }

        /// Makes the set's kfuncs callable by BPF programs of each type in `prog_types`, as
        /// `register_btf_kfunc_id_set()` does for a C module.
        ///
        /// It first refuses, with a message in the kernel log that says how to fix the build, a
        /// module the kernel has no BTF for and a set `resolve_btfids` and btfgen did not
        /// complete (a module built without `kfuncs.mk`): the kernel would register either with
        /// at most a warning, and BPF would not see the kfuncs.
        ///
        /// `filter`, when given, runs at verification time for every call of a kfunc of this set
        /// (`struct btf_kfunc_id_set.filter`): a non-zero return makes the verifier reject the
        /// call, so a program type the set is registered for can still be refused ([`prog_type`]
        /// reads the type a program runs as). The kernel keeps one filter list per module and
        /// kfunc hook, and runs all of it for a call of any of the module's kfuncs on that hook
        /// (`TRACING` shares one hook with `TRACEPOINT`, `PERF_EVENT` and `LSM`): a module with
        /// several sets must let a filter return 0 for the kfunc ids of the other sets.
        ///
        /// Call it from module init. Kfunc sets cannot be unregistered: the kernel drops them
        /// together with the module's BTF when the module goes away. If one registration fails,
        /// the error is returned and init should fail; the registrations made so far go away with
        /// the module.
        ///
        /// [`prog_type`]: super::prog_type
        ///
        /// # Examples
        ///
        /// ```ignore
        /// MY_KFUNC_SET.register(
        ///     module,
        ///     &[bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING],
        ///     None,
        /// )?;
        /// ```
        pub(crate) fn register(
            &'static self,
            module: &'static ThisModule,
            prog_types: &[bindings::bpf_prog_type],
            filter: bindings::btf_kfunc_filter_t,
        ) -> Result {
            check_module_btf(module)?;
            self.check()?;
            let kset = bindings::btf_kfunc_id_set {
                owner: module.as_ptr(),
                set: self.as_ptr().cast(),
                filter,
            };
            for &prog_type in prog_types {
                // SAFETY: `kset` is valid for the call, and the kernel keeps only `set` and
                // `filter` from it: `set` points into this module's `.BTF_ids` (type invariant of
                // `BtfKfuncSet`, `'static`), which lives as long as the module's BTF where the
                // kernel records the set; `filter` is a function of this module, whose calls stop
                // with the module's BTF too.
                to_result(unsafe { bindings::register_btf_kfunc_id_set(prog_type, &kset) })?;
            }
            Ok(())
        }
    }

    impl BtfDtorList {
        /// Registers the list's destructors with `register_btf_id_dtor_kfuncs()`: a map can then
        /// hold each struct of the list as a referenced `__kptr`, and the kernel calls the
        /// struct's destructor on a reference the map still holds when the value is freed (map
        /// update, delete or teardown).
        ///
        /// The kernel looks a kptr's destructor up in the BTF that owns its type, so the
        /// structs are the module's own (btfgen refuses a vmlinux type at build time). It takes
        /// one destructor registration per module: call this once, from module init, after the
        /// kfunc sets (a second call fails with `EBUSY`). Like the sets, it first refuses a list
        /// `resolve_btfids` and btfgen did not complete.
        ///
        /// A map that holds a kptr of the module's type holds a reference on the module, so the
        /// module cannot be unloaded while a destructor may still run. A destructor runs in the
        /// context of whoever frees the map value, which can be a BPF program in any context,
        /// NMI included: it must neither sleep nor take locks that context may hold.
        pub(crate) fn register(&'static self, module: &'static ThisModule) -> Result {
            // A second registration would make the kernel WARN (and fail).
            if self
                .registered
                .swap(true, core::sync::atomic::Ordering::Relaxed)
            {
                kernel::pr_err!("the destructor list is registered already: register it once\n");
                return Err(EBUSY);
            }
            check_module_btf(module)?;
            for i in 0..2 * self.len as usize {
                // SAFETY: the list is `len` pairs of 4-byte aligned `u32`s (type invariant).
                if unsafe { word(self.start, i) } == 0 {
                    kernel::pr_err!(
                        "destructor list entry {} has no BTF id: the module's BTF lacks its struct or destructor; {}\n",
                        i / 2,
                        FIX
                    );
                    return Err(ENOENT);
                }
            }
            // SAFETY: the list is `len` `struct btf_id_dtor_kfunc` (two `u32` ids each, no
            // padding), which the kernel copies; the destructors are functions of this module,
            // which maps holding the types keep loaded.
            to_result(unsafe {
                bindings::register_btf_id_dtor_kfuncs(
                    self.start.cast::<bindings::btf_id_dtor_kfunc>(),
                    self.len,
                    module.as_ptr(),
                )
            })
        }
    }
}

/// The type BPF program `prog` runs as, for a kfunc set's filter: what `resolve_prog_type()`
/// (include/linux/bpf_verifier.h) returns, so an extension (`freplace`) program counts as the
/// type of the program it replaces.
///
/// btfgen checks at build time that bindgen's layouts of `struct bpf_prog` and
/// `struct bpf_prog_aux`, which this reads, are vmlinux's.
///
/// # Safety
///
/// `prog` must point to a loaded or loading BPF program, valid for the call: a filter's `prog`
/// argument is.
#[cfg(MODULE)]
pub(crate) unsafe fn prog_type(
    prog: *const kernel::bindings::bpf_prog,
) -> kernel::bindings::bpf_prog_type {
    // SAFETY: `prog` is valid for reads (the caller's contract).
    let ty = unsafe { (*prog).type_ };
    if ty == kernel::bindings::bpf_prog_type_BPF_PROG_TYPE_EXT {
        // SAFETY: every program has its `aux` from bpf_prog_alloc() on, valid as long as the
        // program is.
        let saved = unsafe { (*(*prog).aux).saved_dst_prog_type };
        if saved != 0 {
            return saved;
        }
    }
    ty
}

/// Declares a kfunc id set, the Rust equivalent of `BTF_KFUNCS_START` / `BTF_ID_FLAGS` /
/// `BTF_KFUNCS_END`.
///
/// Each entry names a function and the `KF_*` flags the verifier applies to it; the flags are
/// constant expressions evaluated in the caller's scope. The macro emits, with
/// [`core::arch::global_asm!`], the layout `include/linux/btf_ids.h` produces (section
/// `.BTF_ids`, flags `"a"`):
///
/// ```text
/// NAME:                               global, hidden: the address `as_ptr()` returns
/// __BTF_ID__set8__NAME:               local, size 8 + 8 * n
///     .zero 4                         cnt, filled by resolve_btfids
///     .long BTF_SET8_KFUNCS
/// __BTF_ID__func__<fn>__<unique>:     local STT_OBJECT, size 4, once per entry
///     .zero 4                         BTF id of <fn>, filled by resolve_btfids
///     .long <flags>
/// ```
///
/// and a `static NAME: BtfKfuncSet` that gives the set's address. Every listed name must be a
/// function in scope with an unmangled symbol (`#[no_mangle]`) equal to its name: a typo is a
/// compile error, a mangled function is an assembler error. Set names must be unique in the
/// crate, like the C ones are per object.
///
/// The file must be the crate-root module `kfunc_btf` (the expansion names `$crate::kfunc_btf`);
/// `use crate::kfunc_btf::*;` brings the macro and the flags into scope.
///
/// # Examples
///
/// ```ignore
/// use crate::kfunc_btf::*;
///
/// btf_kfunc_set! {
///     /// The task kfuncs.
///     pub(crate) static TASK_KFUNC_SET = {
///         rust_task_acquire: KF_ACQUIRE | KF_RCU | KF_RET_NULL,
///         rust_task_release: KF_RELEASE,
///     };
/// }
///
/// TASK_KFUNC_SET.register(module, &[bindings::bpf_prog_type_BPF_PROG_TYPE_TRACING], None)?;
/// ```
macro_rules! btf_kfunc_set {
    (
        $(#[$meta:meta])*
        $vis:vis static $name:ident = {
            $($func:ident : $flags:expr),+ $(,)?
        };
    ) => {
        ::core::arch::global_asm!(
            ".pushsection .BTF_ids,\"a\"",
            // `struct btf_id_set8` is read as 4-byte words: keep the set aligned wherever the
            // linker places it (a no-op where it already is, so the bytes stay those of C).
            ".balign 4",
            // `NAME` is global (but hidden) so that the static below can refer to it from any
            // codegen unit; the C macros make it local because C needs no such reference.
            ::core::concat!(".globl ", ::core::stringify!($name)),
            ::core::concat!(".hidden ", ::core::stringify!($name)),
            ::core::concat!(::core::stringify!($name), ":"),
            ::core::concat!(".local __BTF_ID__set8__", ::core::stringify!($name)),
            ::core::concat!("__BTF_ID__set8__", ::core::stringify!($name), ":"),
            ".zero 4",
            ".long {set_flags}",
            // One entry as `BTF_ID_FLAGS(func, name, flags)`; `\@` (the assembler's count of
            // macro expansions) plays the part of `__COUNTER__` for unique local symbols.
            ".macro __btf_kfunc_entry name, symbol, flags",
            ".ifnc \\name, \\symbol",
            ".error \"kfunc \\name: symbol \\symbol differs from its name, add #[no_mangle]\"",
            ".endif",
            ".local __BTF_ID__func__\\name\\()__\\@",
            ".type __BTF_ID__func__\\name\\()__\\@, STT_OBJECT",
            ".size __BTF_ID__func__\\name\\()__\\@, 4",
            "__BTF_ID__func__\\name\\()__\\@:",
            ".zero 4",
            ".long \\flags",
            ".endm",
            $(
                ::core::concat!("__btf_kfunc_entry ", ::core::stringify!($func), ", {}, {}"),
            )+
            ".purgem __btf_kfunc_entry",
            ::core::concat!(
                ".size __BTF_ID__set8__", ::core::stringify!($name),
                ", . - ", ::core::stringify!($name)
            ),
            ".popsection",
            $(
                // `sym` makes the compiler resolve the name: a typo fails the build.
                sym $func,
                const { let flags: u32 = $flags; flags },
            )+
            set_flags = const $crate::kfunc_btf::BTF_SET8_KFUNCS,
            options(att_syntax)
        );

        $(#[$meta])*
        $vis static $name: $crate::kfunc_btf::BtfKfuncSet = {
            extern "C" {
                #[link_name = ::core::stringify!($name)]
                static SET: u8;
            }
            const LEN: usize = [$(::core::stringify!($func)),+].len();
            // SAFETY: `SET` is the `struct btf_id_set8` emitted into `.BTF_ids` above, with one
            // entry per listed function; it is part of this object, so it lives for `'static`.
            unsafe { $crate::kfunc_btf::BtfKfuncSet::from_raw(&raw const SET, LEN as u32) }
        };
    };
}
pub(crate) use btf_kfunc_set;

/// Declares the destructors of the module's own structs for BPF maps, the Rust equivalent of a
/// `BTF_ID_LIST` of `BTF_ID(struct, T)` / `BTF_ID(func, dtor)` pairs.
///
/// Each entry names a struct of the module and its destructor, an `unsafe extern "C" fn(*mut
/// T)` with an unmangled symbol equal to its name that drops one reference (usually the set's
/// `KF_RELEASE` kfunc); a wrong name, type or signature does not compile. The macro emits, with
/// [`core::arch::global_asm!`], into `.BTF_ids` (flags `"a"`):
///
/// ```text
/// NAME:                                   global, hidden: the address the static refers to
/// __rust_kfuncs_dtors__NAME:              local, size 8 * n: where btfgen finds the list
/// __BTF_ID__struct__<T>__<unique>:        local STT_OBJECT, size 4, once per entry
///     .zero 4                             BTF id of struct T, filled by resolve_btfids
/// __BTF_ID__func__<dtor>__<unique>:       local STT_OBJECT, size 4
///     .zero 4                             BTF id of dtor, filled by resolve_btfids
/// ```
///
/// which is an array of `struct btf_id_dtor_kfunc`, and a `static NAME: BtfDtorList` to
/// register. btfgen writes each struct into the module's BTF (from its DWARF) and gives each
/// destructor a `FUNC`. The kernel takes one destructor registration per module, so a module
/// has one list (a second one fails to assemble: `__rust_kfuncs_dtor_list` is defined twice).
///
/// # Examples
///
/// ```ignore
/// use crate::kfunc_btf::*;
///
/// btf_dtor_list! {
///     /// The destructor of `my_obj` kptrs.
///     pub(crate) static MY_DTORS = {
///         my_obj: my_obj_release,
///     };
/// }
///
/// MY_DTORS.register(module)?;
/// ```
// A module without kptr types of its own uses no destructor list.
#[allow(unused_macros)]
macro_rules! btf_dtor_list {
    (
        $(#[$meta:meta])*
        $vis:vis static $name:ident = {
            $($ty:ident : $dtor:ident),+ $(,)?
        };
    ) => {
        // Each destructor has the shape the kernel checks (`void dtor(T *)`).
        $(
            const _: unsafe extern "C" fn(*mut $ty) = $dtor;
        )+

        ::core::arch::global_asm!(
            ".pushsection .BTF_ids,\"a\"",
            ".balign 4",
            // One list per module, as the kernel takes one destructor registration per module.
            ".globl __rust_kfuncs_dtor_list",
            ".hidden __rust_kfuncs_dtor_list",
            "__rust_kfuncs_dtor_list:",
            ::core::concat!(".globl ", ::core::stringify!($name)),
            ::core::concat!(".hidden ", ::core::stringify!($name)),
            ::core::concat!(::core::stringify!($name), ":"),
            ::core::concat!(".local __rust_kfuncs_dtors__", ::core::stringify!($name)),
            ::core::concat!("__rust_kfuncs_dtors__", ::core::stringify!($name), ":"),
            // One pair as `BTF_ID(struct, ty)` `BTF_ID(func, name)`.
            ".macro __btf_dtor_entry ty, name, symbol",
            ".ifnc \\name, \\symbol",
            ".error \"destructor \\name: symbol \\symbol differs from its name, add #[no_mangle]\"",
            ".endif",
            ".local __BTF_ID__struct__\\ty\\()__\\@",
            ".type __BTF_ID__struct__\\ty\\()__\\@, STT_OBJECT",
            ".size __BTF_ID__struct__\\ty\\()__\\@, 4",
            "__BTF_ID__struct__\\ty\\()__\\@:",
            ".zero 4",
            ".local __BTF_ID__func__\\name\\()__\\@",
            ".type __BTF_ID__func__\\name\\()__\\@, STT_OBJECT",
            ".size __BTF_ID__func__\\name\\()__\\@, 4",
            "__BTF_ID__func__\\name\\()__\\@:",
            ".zero 4",
            ".endm",
            $(
                ::core::concat!(
                    "__btf_dtor_entry ", ::core::stringify!($ty), ", ",
                    ::core::stringify!($dtor), ", {}"
                ),
            )+
            ".purgem __btf_dtor_entry",
            ::core::concat!(
                ".size __rust_kfuncs_dtors__", ::core::stringify!($name),
                ", . - ", ::core::stringify!($name)
            ),
            ".popsection",
            $(
                sym $dtor,
            )+
            options(att_syntax)
        );

        $(#[$meta])*
        $vis static $name: $crate::kfunc_btf::BtfDtorList = {
            extern "C" {
                #[link_name = ::core::stringify!($name)]
                static LIST: u8;
            }
            const LEN: usize = [$(::core::stringify!($dtor)),+].len();
            // SAFETY: `LIST` is the list emitted into `.BTF_ids` above, one pair of ids per
            // entry; it is part of this object, so it lives for `'static`.
            unsafe { $crate::kfunc_btf::BtfDtorList::from_raw(&raw const LIST, LEN as u32) }
        };
    };
}
#[allow(unused_imports)]
pub(crate) use btf_dtor_list;
