/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One array slot holding a referenced task kptr; the map's destructor is
 * the kernel's (it releases what is left in the slot when the map goes).
 * Shared by the selftests (task_kfuncs_common.h) and the bench.
 */
#ifndef TASK_KFUNCS_SLOT_H
#define TASK_KFUNCS_SLOT_H

struct task_slot {
	struct task_struct __kptr *task;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, int);
	__type(value, struct task_slot);
	__uint(max_entries, 1);
} task_slots SEC(".maps");

static inline struct task_slot *task_slot(void)
{
	int zero = 0;

	return bpf_map_lookup_elem(&task_slots, &zero);
}

#endif /* TASK_KFUNCS_SLOT_H */
