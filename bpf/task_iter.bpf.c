// task_iter.bpf.c: a bpf_iter program over every task. Each task (thread)
// prints one line "<tgid> <pid> <comm>"; link:read() returns them all.
// list_tasks_8x prints each line 8 times.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("iter/task")
int list_tasks(struct bpf_iter__task *ctx)
{
    struct seq_file *seq = ctx->meta->seq;
    struct task_struct *task = ctx->task;

    if (!task) // the end of the walk
        return 0;
    BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
    return 0;
}

// the same lines, each 8 times: output over many pages, as a big iterator's
SEC("iter/task")
int list_tasks_8x(struct bpf_iter__task *ctx)
{
    struct seq_file *seq = ctx->meta->seq;
    struct task_struct *task = ctx->task;

    if (!task)
        return 0;
    for (int i = 0; i < 8; i++)
        BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
