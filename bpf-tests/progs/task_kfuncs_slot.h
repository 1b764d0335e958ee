/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Array slots holding referenced task kptrs (NR_TASK_SLOTS of them, one
 * unless the includer says otherwise); the map's destructor is the
 * kernel's (it releases what is left in the slots when the map goes).
 * Shared by the selftests and the bench.
 */
#ifndef TASK_KFUNCS_SLOT_H
#define TASK_KFUNCS_SLOT_H

struct task_slot {
	struct task_struct __kptr *task;
};

#ifndef NR_TASK_SLOTS
#define NR_TASK_SLOTS 1
#endif

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct task_slot);
	__uint(max_entries, NR_TASK_SLOTS);
} task_slots SEC(".maps");

static inline struct task_slot *task_slot_at(u32 i)
{
	return bpf_map_lookup_elem(&task_slots, &i);
}

static inline struct task_slot *task_slot(void)
{
	return task_slot_at(0);
}

#endif /* TASK_KFUNCS_SLOT_H */
