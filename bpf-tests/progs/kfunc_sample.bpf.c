// SPDX-License-Identifier: GPL-2.0
/*
 * Calls every kfunc of samples/kfunc_sample (the rust-kfuncs sample module)
 * and checks what each returns; the runner (src/suites/sample.rs) test-runs
 * the syscall programs, triggers the tracing one and loads each __failure
 * program alone. The declarations, and struct kfunc_sample_obj, come from the
 * module's BTF (kfunc_sample.kfuncs.h, written by btfgen --header), not by
 * hand.
 */

#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kfunc_sample.kfuncs.h"

#include "selftest.h"

/*
 * The same kfuncs declared with full 64-bit arguments: libbpf resolves a
 * ksym's ___flavour to the kfunc of the plain name, and the verifier lets a
 * program pass any scalar, so these calls put garbage above the narrow
 * arguments' C types. The Rust kfuncs must read only the low bytes.
 */
enum sample_wide_op { SAMPLE_WIDE_OP_64 = 0x100000000ULL };
extern u64 kfunc_sample_add_unsigned___wide(u64 a, u64 b, u64 c, u64 d) __ksym;
extern s64 kfunc_sample_add_signed___wide(u64 a, u64 b, u64 c, s64 d) __ksym;
extern bool kfunc_sample_not___wide(u64 b) __ksym;
extern s64 kfunc_sample_apply___wide(enum sample_wide_op op, s64 x) __ksym;
extern void kfunc_sample_mem_fill___wide(void *mem, u32 mem__szk, u64 byte) __ksym;

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

static const char hello[] = "hello, kfunc";

/* A map value holding a reference on one of the module's objects. */
struct obj_slot {
	struct kfunc_sample_obj __kptr *obj;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct obj_slot);
} objs SEC(".maps");

/* Objects alive, as object_count saw them (the runner reads it). */
u32 live;

SEC("syscall")
int scalars_of_each_width(void *ctx)
{
	runs++;
	CHECK(kfunc_sample_add_unsigned(1, 2, 3, 4) == 10);
	CHECK(kfunc_sample_add_unsigned(0xff, 0xffff, 0xffffffff, 1) ==
			    0xff + 0xffff + 0xffffffffULL + 1);
	CHECK(kfunc_sample_add_signed(-1, -2, -3, -4) == -10);
	CHECK(kfunc_sample_add_signed(-128, -32768, -2147483647 - 1, 0) ==
			    -128 - 32768 - 2147483648LL);
	/* Upper bits must not leak into u8, u16 and u32 arguments. */
	CHECK(kfunc_sample_add_unsigned___wide(0x1ff, 0x1ffff, 0x100000003ULL, 4) ==
			    0xff + 0xffff + 3 + 4);
	/* Nor into s8, s16 and s32 ones: 0x1ff is s8 -1, 0x2fffe is s16 -2. */
	CHECK(kfunc_sample_add_signed___wide(0x1ff, 0x2fffe, 0x3fffffffdULL, -4) ==
			    -10);
	return 0;
}

SEC("syscall")
int bool_argument(void *ctx)
{
	runs++;
	CHECK(kfunc_sample_not(true) == false);
	CHECK(kfunc_sample_not(false) == true);
	/* A bool is its low byte: 0x100 is false, 2 is true. */
	CHECK(kfunc_sample_not___wide(0x100) == true);
	CHECK(kfunc_sample_not___wide(2) == false);
	return 0;
}

SEC("syscall")
int memory_with_size(void *ctx)
{
	u8 buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	int i, all = 1;

	runs++;
	CHECK(kfunc_sample_mem_sum(buf, 4) == 10);
	CHECK(kfunc_sample_mem_sum(buf, sizeof(buf)) == 36);
	/* __nullable: NULL memory is allowed, and sums to 0. */
	CHECK(kfunc_sample_mem_sum(NULL, 0) == 0);
	kfunc_sample_mem_fill(buf, sizeof(buf), 0xab);
	for (i = 0; i < sizeof(buf); i++)
		all &= buf[i] == 0xab;
	CHECK(all);
	kfunc_sample_mem_fill___wide(buf, 4, 0x1cd);
	CHECK(buf[0] == 0xcd && buf[3] == 0xcd && buf[4] == 0xab);
	return 0;
}

SEC("syscall")
int pointer_to_scalar(void *ctx)
{
	u64 value = 1;

	runs++;
	kfunc_sample_store(&value, 0x1122334455667788ULL);
	CHECK(value == 0x1122334455667788ULL);
	return 0;
}

SEC("syscall")
int const_string(void *ctx)
{
	runs++;
	CHECK(kfunc_sample_strlen(hello) == sizeof(hello) - 1);
	return 0;
}

SEC("syscall")
int enum_argument(void *ctx)
{
	runs++;
	CHECK(kfunc_sample_apply(KFUNC_SAMPLE_DOUBLE, 21) == 42);
	CHECK(kfunc_sample_apply(KFUNC_SAMPLE_NEGATE, 5) == -5);
	/* Not a value of the enum: the kfunc sees None and returns 0. */
	CHECK(kfunc_sample_apply((enum kfunc_sample_op)7, 5) == 0);
	/* The low 32 bits are the enum: 0x100000001 is KFUNC_SAMPLE_DOUBLE. */
	CHECK(kfunc_sample_apply___wide((enum sample_wide_op)0x100000001ULL, 21) == 42);
	return 0;
}

SEC("syscall")
int task_pointers(void *ctx)
{
	struct task_struct *current = bpf_get_current_task_btf();

	runs++;
	/* KF_TRUSTED_ARGS with __nullable: a trusted task, or NULL. */
	CHECK(kfunc_sample_task_pid(current) == target_tgid);
	CHECK(kfunc_sample_task_pid(NULL) == -1);
	/* KF_RCU: a trusted pointer is fine too. */
	CHECK(kfunc_sample_task_tgid(current) == target_tgid);
	return 0;
}

SEC("syscall")
int sleepable(void *ctx)
{
	runs++;
	CHECK(kfunc_sample_sleep(1) == 1);
	CHECK(kfunc_sample_sleep(1000) == 10);
	return 0;
}

/* A tracing program (allowed by the set's filter) with an RCU pointer. */
SEC("tp_btf/task_newtask")
int BPF_PROG(tracing_rcu_pointer, struct task_struct *task, u64 clone_flags)
{
	struct task_struct *parent;

	if (task->tgid == target_tgid || !runner_forked())
		return 0;
	CHECK(kfunc_sample_add_unsigned(1, 1, 1, 1) == 4);
	bpf_rcu_read_lock();
	parent = task->real_parent;
	/* parent is MEM_RCU here: KF_RCU accepts it. */
	CHECK(kfunc_sample_task_tgid(parent) == target_tgid);
	bpf_rcu_read_unlock();
	CHECK(kfunc_sample_task_pid(task) == task->pid);
	return 0;
}

__failure __msg("calling kernel function kfunc_sample_add_unsigned is not allowed")
SEC("tracepoint/sched/sched_process_fork")
int filter_refuses_tracepoint(void *ctx)
{
	return kfunc_sample_add_unsigned(1, 2, 3, 4);
}

__failure __msg("program must be sleepable to call sleepable kfunc kfunc_sample_sleep")
SEC("tp_btf/task_newtask")
int BPF_PROG(sleepable_from_tracing, struct task_struct *task, u64 clone_flags)
{
	return kfunc_sample_sleep(1);
}

__failure __msg("R1 must be referenced or trusted")
SEC("tp_btf/task_newtask")
int BPF_PROG(trusted_rejects_rcu_pointer, struct task_struct *task, u64 clone_flags)
{
	int pid;

	bpf_rcu_read_lock();
	pid = kfunc_sample_task_pid(task->real_parent);
	bpf_rcu_read_unlock();
	return pid;
}

__failure __msg("R2 must be a known constant")
SEC("syscall")
int szk_needs_a_constant(void *ctx)
{
	u8 buf[8] = {};
	u32 n = bpf_get_prandom_u32() & 7;

	kfunc_sample_mem_fill(buf, n, 0);
	return buf[0];
}

__failure __msg("doesn't point to a const string")
SEC("syscall")
int str_needs_a_constant_string(void *ctx)
{
	char buf[8] = "abc";

	return kfunc_sample_strlen(buf);
}

/*
 * The module's own refcounted object: a pointer return with a new reference
 * (KF_ACQUIRE), another reference on it, and each one released (KF_RELEASE).
 */
SEC("syscall")
int object_acquire_release(void *ctx)
{
	struct kfunc_sample_obj *obj, *again;
	u32 before = kfunc_sample_obj_live();

	runs++;
	obj = kfunc_sample_obj_new(42);
	REQUIRE(obj);
	/* The struct is in the module's BTF: the program reads it directly. */
	CHECK(obj->value == 42);
	CHECK(kfunc_sample_obj_live() == before + 1);
	again = kfunc_sample_obj_acquire(obj);
	CHECK(again == obj);
	kfunc_sample_obj_release(again);
	/* One reference left: the object lives on. */
	CHECK(obj->value == 42 && kfunc_sample_obj_live() == before + 1);
	kfunc_sample_obj_release(obj);
	CHECK(kfunc_sample_obj_live() == before);
	return 0;
}

/*
 * The module keeps 16 objects at most: the 17th kfunc_sample_obj_new()
 * returns NULL (KF_RET_NULL). Runs before any case that leaves an object in
 * a map, whose destructor runs only when the map is freed.
 */
#define TAKE(i, prev)							\
	o##i = kfunc_sample_obj_new(i);					\
	if (!o##i) {							\
		CHECK(false);						\
		goto out##prev;						\
	}
#define GIVE(i, prev)							\
	kfunc_sample_obj_release(o##i);					\
out##prev:

SEC("syscall")
int object_pool_runs_out(void *ctx)
{
	struct kfunc_sample_obj *o0, *o1, *o2, *o3, *o4, *o5, *o6, *o7;
	struct kfunc_sample_obj *o8, *o9, *o10, *o11, *o12, *o13, *o14, *o15;
	struct kfunc_sample_obj *extra;

	runs++;
	if (kfunc_sample_obj_live() != 0) {
		CHECK(false);
		return 0;
	}
	o0 = kfunc_sample_obj_new(0);
	REQUIRE(o0);
	TAKE(1, 0) TAKE(2, 1) TAKE(3, 2) TAKE(4, 3) TAKE(5, 4) TAKE(6, 5) TAKE(7, 6)
	TAKE(8, 7) TAKE(9, 8) TAKE(10, 9) TAKE(11, 10) TAKE(12, 11) TAKE(13, 12)
	TAKE(14, 13) TAKE(15, 14)
	CHECK(kfunc_sample_obj_live() == 16);
	extra = kfunc_sample_obj_new(16);
	CHECK(!extra);
	if (extra)
		kfunc_sample_obj_release(extra);
	GIVE(15, 14) GIVE(14, 13) GIVE(13, 12) GIVE(12, 11) GIVE(11, 10) GIVE(10, 9)
	GIVE(9, 8) GIVE(8, 7) GIVE(7, 6) GIVE(6, 5) GIVE(5, 4) GIVE(4, 3) GIVE(3, 2)
	GIVE(2, 1) GIVE(1, 0)
	kfunc_sample_obj_release(o0);
	CHECK(kfunc_sample_obj_live() == 0);
	return 0;
}

/*
 * An object kept in a map as a __kptr: stored with bpf_kptr_xchg(), read
 * under RCU, taken out, one more reference acquired, put back. The map keeps
 * its reference: closing the map drops it through the module's destructor.
 */
SEC("syscall")
int object_kept_in_a_map(void *ctx)
{
	struct kfunc_sample_obj *obj, *old, *extra;
	struct obj_slot *slot;
	int key = 0;
	u32 before = kfunc_sample_obj_live();

	runs++;
	slot = bpf_map_lookup_elem(&objs, &key);
	REQUIRE(slot);
	obj = kfunc_sample_obj_new(7);
	REQUIRE(obj);
	old = bpf_kptr_xchg(&slot->obj, obj);
	CHECK(!old);
	if (old)
		kfunc_sample_obj_release(old);

	/*
	 * Under RCU the kptr of a module's type is an untrusted pointer: its
	 * members can be read, it can be passed to no kfunc that wants a
	 * trusted one (object_from_map_under_rcu).
	 */
	bpf_rcu_read_lock();
	obj = slot->obj;
	CHECK(obj && obj->value == 7);
	bpf_rcu_read_unlock();

	/* To use the object: take the reference out, use it, put it back. */
	obj = bpf_kptr_xchg(&slot->obj, NULL);
	REQUIRE(obj);
	CHECK(obj->value == 7);
	extra = kfunc_sample_obj_acquire(obj);
	old = bpf_kptr_xchg(&slot->obj, obj);
	CHECK(!old);
	if (old)
		kfunc_sample_obj_release(old);
	CHECK(extra->value == 7 && kfunc_sample_obj_live() == before + 1);
	kfunc_sample_obj_release(extra);
	/* The map's reference keeps it alive. */
	CHECK(kfunc_sample_obj_live() == before + 1);
	return 0;
}

/*
 * Leaves one object in the map; the runner closes the map and waits for the
 * module's destructor to free it (object_destructor_on_close).
 */
SEC("syscall")
int object_store(void *ctx)
{
	struct kfunc_sample_obj *obj, *old;
	struct obj_slot *slot;
	int key = 0;

	runs++;
	slot = bpf_map_lookup_elem(&objs, &key);
	obj = kfunc_sample_obj_new(9);
	if (!slot || !obj) {
		CHECK(false);
		if (obj)
			kfunc_sample_obj_release(obj);
		return 0;
	}
	old = bpf_kptr_xchg(&slot->obj, obj);
	if (old)
		kfunc_sample_obj_release(old);
	CHECK(kfunc_sample_obj_live() >= 1);
	return 0;
}

/* How many objects are alive, for the runner. */
SEC("syscall")
int object_count(void *ctx)
{
	runs++;
	live = kfunc_sample_obj_live();
	return 0;
}

__failure __msg("Unreleased reference id=")
SEC("syscall")
int object_leaked(void *ctx)
{
	struct kfunc_sample_obj *obj = kfunc_sample_obj_new(1);

	return obj ? 1 : 0;
}

__failure __msg("Possibly NULL pointer passed to trusted")
SEC("syscall")
int object_unchecked_null(void *ctx)
{
	struct kfunc_sample_obj *obj = kfunc_sample_obj_new(1), *again;

	/* KF_RET_NULL: obj may be NULL, and acquire wants a trusted pointer. */
	again = kfunc_sample_obj_acquire(obj);
	kfunc_sample_obj_release(again);
	if (obj)
		kfunc_sample_obj_release(obj);
	return 0;
}

__failure __msg("invalid mem access 'scalar'")
SEC("syscall")
int object_used_after_release(void *ctx)
{
	struct kfunc_sample_obj *obj = kfunc_sample_obj_new(1);

	if (!obj)
		return 0;
	kfunc_sample_obj_release(obj);
	return obj->value;
}

/* Only the kernel's own types are RCU-protected kptrs: no get under RCU. */
__failure __msg("R1 must be referenced or trusted")
SEC("syscall")
int object_from_map_under_rcu(void *ctx)
{
	struct kfunc_sample_obj *obj, *got = NULL;
	struct obj_slot *slot;
	int key = 0;

	slot = bpf_map_lookup_elem(&objs, &key);
	if (!slot)
		return 0;
	bpf_rcu_read_lock();
	obj = slot->obj;
	if (obj)
		got = kfunc_sample_obj_acquire(obj);
	bpf_rcu_read_unlock();
	if (got)
		kfunc_sample_obj_release(got);
	return 0;
}

char _license[] SEC("license") = "GPL";
