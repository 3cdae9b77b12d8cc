/* block I/O family: requests from queue to completion, attributed to the
 * process that submitted them.
 *
 * block_bio_queue fires in the submitter's context; block_rq_issue and
 * block_rq_complete may run in a kworker or an interrupt, so the submitter is
 * remembered by (device, sector). A bio merged into another request never
 * completes under its own sector: the merge tracepoints (rare) drop its entry
 * or move it to the request's new start sector. A bio a stacking driver (dm,
 * md) remaps to another device never completes as a request of the device
 * it was queued on: block_bio_remap drops that entry (the clone is queued
 * again, in the same context, on the lower device). A bio-based device
 * (zram, brd) has no requests: its bios end in block_bio_complete, which
 * reports them like a request completion.
 *
 * Every entry ends in an event or in a lost count. A completion the kernel
 * ran but no BPF program saw leaves its entry behind (seen on the sandboxed
 * VMs this project is measured on: the tracing programs are not run while
 * the VM's own agent threads are the current task, including the block
 * completion softirq that lands on top of them; BENCHMARKS.md, "Loss"). The
 * next bio queued at the same (device, sector) finds it: counted as
 * PYI_LOST_BLOCK_UNSEEN (two requests at one sector in flight together lose
 * one event the same way: the first completion takes the newer entry). What
 * is left at the end is settled in user space against the device's own count
 * of requests in flight (pyimpact.collect.blockacct). The LRU map bounds what
 * no path removes (a bio that fails before it becomes a request). The map is
 * also the list of requests in flight right now, with their age.
 *
 * block_rq_complete runs in the completion interrupt. As a classic tracepoint
 * its program is skipped whenever the interrupt lands while another classic
 * tracepoint program runs on that CPU (the kernel's bpf_prog_active guard:
 * our signal, fork and exit programs, anyone's kprobe, a map syscall from user
 * space); the kernel counts each skip (recursion_misses) and each skip is a
 * block event lost. With PYI_TP_BTF it is a raw tracepoint instead, guarded
 * per program only: not skipped at all in the capacity benchmark at up to
 * 200k events/s. Its argument is a struct request * read through
 * bpf_probe_read_kernel at offsets user space takes from the kernel's BTF
 * (pyimpact.collect.tp_btf.BLOCK_FIELDS, written to pyi_offsets before any
 * process is followed, so before any request can match).
 */

struct pyi_rq_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct pyi_rq {
    u64 queued;              /* bio queued (submitter context) */
    u64 issued;              /* handed to the driver; 0 = not yet */
    u32 tgid;
    u32 tid;
    u32 bytes;
    u32 pad;
    u64 rwbs;                /* up to 8 chars of the rwbs string */
    char comm[PYI_COMM_LEN];
};

BPF_TABLE("lru_hash", struct pyi_rq_key, struct pyi_rq, block_inflight, 10240);

TRACEPOINT_PROBE(block, block_bio_queue)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    struct pyi_rq rq = {};
    rq.queued = bpf_ktime_get_ns();
    rq.tgid = tgid;
    rq.tid = (u32)id;
    rq.bytes = args->nr_sector * 512;
    bpf_probe_read_kernel(&rq.rwbs, sizeof(rq.rwbs), args->rwbs);
    bpf_get_current_comm(&rq.comm, sizeof(rq.comm));
    /* Insert only where no entry is (atomic under the bucket lock: of two
     * bios queued at one sector at once, on two CPUs, one finds the other's).
     * An entry already there: the request queued at this sector before
     * completed where no probe saw it, or is still in flight beside this one
     * and one of the two completions will find no entry; either way one
     * event will not come: counted. The newer bio then takes the entry over
     * in place (if the old request's completion took it meanwhile, the write
     * lands in a freed element and this bio's completion finds no entry:
     * still one event, one count; if it took it before the lookup, nothing
     * was lost and the bio is inserted again). */
    if (block_inflight.insert(&key, &rq) != 0) {
        struct pyi_rq *old = block_inflight.lookup(&key);
        if (old) {
            pyi_count_lost(PYI_LOST_BLOCK_UNSEEN);
            *old = rq;
        } else if (block_inflight.insert(&key, &rq) != 0) {
            /* gone between the two: its completion just took it; failing
             * again, the map could not take this one */
            pyi_count_lost(PYI_LOST_MAP_FULL);
        }
    }
    return 0;
}

/* A stacking driver (dm, md) passes the bio on to a lower device: the entry
 * under the upper device would never complete; the clone queued on the lower
 * device has its own. A partition's remap (before block_bio_queue, under the
 * partition's own dev_t, never a key here) deletes nothing. */
TRACEPOINT_PROBE(block, block_bio_remap)
{
    struct pyi_rq_key key = { .dev = args->old_dev, .pad = 0, .sector = args->old_sector };
    block_inflight.delete(&key);
    return 0;
}

/* The bio was appended to a request queued before it: it completes as part
 * of that request (whose event counts its bytes once issued), never under
 * its own sector. */
TRACEPOINT_PROBE(block, block_bio_backmerge)
{
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    block_inflight.delete(&key);
    return 0;
}

/* A queued request merged into the one before it in the scheduler: it
 * completes inside that one, never under its own sector. */
TRACEPOINT_PROBE(block, block_rq_merge)
{
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    block_inflight.delete(&key);
    return 0;
}

/* The bio was put in front of a request: the request now starts at the bio's
 * sector (the bio's own entry, if it has one, is the key its completion will
 * find); the request's entry under its old start sector moves there when the
 * bio is not ours. */
TRACEPOINT_PROBE(block, block_bio_frontmerge)
{
    struct pyi_rq_key old = { .dev = args->dev, .pad = 0, .sector = args->sector + args->nr_sector };
    struct pyi_rq *rq = block_inflight.lookup(&old);
    if (!rq)
        return 0;
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    if (!block_inflight.lookup(&key)) {
        struct pyi_rq moved = *rq;
        moved.bytes += args->nr_sector * 512;
        if (block_inflight.update(&key, &moved) != 0)
            pyi_count_lost(PYI_LOST_MAP_FULL);
    }
    block_inflight.delete(&old);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    struct pyi_rq *rq = block_inflight.lookup(&key);
    if (!rq)
        return 0;
    rq->issued = bpf_ktime_get_ns();
    if (args->bytes)
        rq->bytes = args->bytes;
    return 0;
}

/* One completed request (dev, sector, error as -errno): its event. */
static __always_inline void pyi_block_complete(u32 dev, u64 sector, s32 error)
{
    struct pyi_rq_key key = { .dev = dev, .pad = 0, .sector = sector };
    struct pyi_rq *rq = block_inflight.lookup(&key);
    if (!rq)
        return;
    u64 now = bpf_ktime_get_ns();
    struct pyi_event *e = events.ringbuf_reserve(sizeof(struct pyi_event));
    if (!e) {
        pyi_count_lost(PYI_LOST_RINGBUF);
        block_inflight.delete(&key);
        return;
    }
    e->ts = rq->queued;
    e->dur = now - rq->queued;
    e->kind = PYI_KIND_BLOCK_IO;
    e->tgid = rq->tgid;
    e->tid = rq->tid;
    e->aux = error;
    e->ret = rq->issued ? (s64)(now - rq->issued) : -1;   /* device latency */
    e->a[0] = dev;
    e->a[1] = sector;
    e->a[2] = rq->bytes;
    e->a[3] = rq->rwbs;
    __builtin_memcpy(&e->comm, rq->comm, PYI_COMM_LEN);
    events.ringbuf_submit(e, 0);
    block_inflight.delete(&key);
}

/* A bio ended without a request (a bio-based device, or a bio failed before it
 * became one): the kernel reports only those here, a request's bios are
 * marked as traced by block_rq_complete. */
TRACEPOINT_PROBE(block, block_bio_complete)
{
    pyi_block_complete(args->dev, args->sector, args->error);
    return 0;
}

#if PYI_TP_BTF
/* Offsets from the kernel's BTF, in the order of tp_btf.BLOCK_FIELDS. */
#define PYI_OFF_RQ_Q 0
#define PYI_OFF_RQ_SECTOR 1
#define PYI_OFF_Q_DISK 2
#define PYI_OFF_DISK_MAJOR 3
#define PYI_OFF_DISK_MINOR 4
BPF_ARRAY(pyi_offsets, u32, 8);

static __always_inline u32 pyi_offset(int which)
{
    u32 *off = pyi_offsets.lookup(&which);
    return off ? *off : 0;
}

/* blk_status_t to the -errno the classic tracepoint reports
 * (blk_status_to_errno); the codes 1..10 have kept their meaning since 4.13,
 * anything newer is reported as -EIO. */
static __always_inline s32 pyi_blk_errno(u8 status)
{
    switch (status) {
    case 0: return 0;
    case 1: return -95;     /* NOTSUPP: EOPNOTSUPP */
    case 2: return -110;    /* TIMEOUT: ETIMEDOUT */
    case 3: return -28;     /* NOSPC: ENOSPC */
    case 4: return -67;     /* TRANSPORT: ENOLINK */
    case 5: return -121;    /* TARGET: EREMOTEIO */
    case 6: return -52;     /* NEXUS / RESV_CONFLICT: EBADE */
    case 7: return -61;     /* MEDIUM: ENODATA */
    case 8: return -84;     /* PROTECTION: EILSEQ */
    case 9: return -12;     /* RESOURCE: ENOMEM */
    }
    return -5;              /* IOERR and the rest: EIO */
}

/* block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes) */
RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    char *rq = (char *)ctx->args[0];
    u64 sector = 0;
    char *q = 0, *disk = 0;
    s32 major = 0, minor = 0;
    bpf_probe_read_kernel(&q, sizeof(q), rq + pyi_offset(PYI_OFF_RQ_Q));
    bpf_probe_read_kernel(&sector, sizeof(sector), rq + pyi_offset(PYI_OFF_RQ_SECTOR));
    if (q)
        bpf_probe_read_kernel(&disk, sizeof(disk), q + pyi_offset(PYI_OFF_Q_DISK));
    if (disk) {
        bpf_probe_read_kernel(&major, sizeof(major), disk + pyi_offset(PYI_OFF_DISK_MAJOR));
        bpf_probe_read_kernel(&minor, sizeof(minor), disk + pyi_offset(PYI_OFF_DISK_MINOR));
    }
    /* the kernel-internal dev_t the classic tracepoints report: major << 20 | minor */
    u32 dev = disk ? (((u32)major << 20) | ((u32)minor & 0xFFFFF)) : 0;
    pyi_block_complete(dev, sector, pyi_blk_errno((u8)ctx->args[1]));
    return 0;
}
#else
TRACEPOINT_PROBE(block, block_rq_complete)
{
    pyi_block_complete(args->dev, args->sector, args->error);
    return 0;
}
#endif
