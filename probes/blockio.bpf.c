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
 * 200k events/s. So are the other block programs (pyimpact.h: a raw
 * tracepoint also detaches at once): they read the struct bio * or struct
 * request * they get through bpf_probe_read_kernel at offsets user space
 * takes from the kernel's BTF (pyimpact.collect.tp_btf.KERNEL_FIELDS,
 * written to pyi_offsets before any process is followed, so before any
 * request can match), and rebuild the classic tracepoints' rwbs string
 * from the bio's flags.
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

/* A bio queued by the current task: remembered under (dev, sector) until
 * its request completes. rwbs: up to 8 characters of the classic
 * tracepoint's rwbs string. */
static __always_inline int pyi_on_bio_queue(u32 dev, u64 sector, u32 nr_sector, u64 rwbs)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    struct pyi_rq_key key = { .dev = dev, .pad = 0, .sector = sector };
    struct pyi_rq rq = {};
    rq.queued = bpf_ktime_get_ns();
    rq.tgid = tgid;
    rq.tid = (u32)id;
    rq.bytes = nr_sector * 512;
    rq.rwbs = rwbs;
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
static __always_inline int pyi_on_bio_remap(u32 old_dev, u64 old_sector)
{
    struct pyi_rq_key key = { .dev = old_dev, .pad = 0, .sector = old_sector };
    block_inflight.delete(&key);
    return 0;
}

/* The bio was appended to a request queued before it (block_bio_backmerge),
 * or a queued request merged into the one before it in the scheduler
 * (block_rq_merge): it completes as part of that request (whose event counts
 * its bytes once issued), never under its own sector. */
static __always_inline int pyi_forget(u32 dev, u64 sector)
{
    struct pyi_rq_key key = { .dev = dev, .pad = 0, .sector = sector };
    block_inflight.delete(&key);
    return 0;
}

/* The bio was put in front of a request: the request now starts at the bio's
 * sector (the bio's own entry, if it has one, is the key its completion will
 * find); the request's entry under its old start sector moves there when the
 * bio is not ours. */
static __always_inline int pyi_on_bio_frontmerge(u32 dev, u64 sector, u32 nr_sector)
{
    struct pyi_rq_key old = { .dev = dev, .pad = 0, .sector = sector + nr_sector };
    struct pyi_rq *rq = block_inflight.lookup(&old);
    if (!rq)
        return 0;
    struct pyi_rq_key key = { .dev = dev, .pad = 0, .sector = sector };
    if (!block_inflight.lookup(&key)) {
        struct pyi_rq moved = *rq;
        moved.bytes += nr_sector * 512;
        if (block_inflight.update(&key, &moved) != 0)
            pyi_count_lost(PYI_LOST_MAP_FULL);
    }
    block_inflight.delete(&old);
    return 0;
}

static __always_inline int pyi_on_rq_issue(u32 dev, u64 sector, u32 bytes)
{
    struct pyi_rq_key key = { .dev = dev, .pad = 0, .sector = sector };
    struct pyi_rq *rq = block_inflight.lookup(&key);
    if (!rq)
        return 0;
    rq->issued = bpf_ktime_get_ns();
    if (bytes)
        rq->bytes = bytes;
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
 * became one): the kernel reports only those in block_bio_complete, a
 * request's bios are marked as traced by block_rq_complete. */

#if PYI_TP_BTF
/* Raw tracepoints (pyimpact.h, PYI_TP_BTF): the kernel's own arguments, a
 * struct bio * or struct request *, read at offsets from the kernel's BTF. */

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

/* The kernel-internal dev_t the classic tracepoints report for a disk
 * (disk_devt): major << 20 | first_minor; 0 without a disk. */
static __always_inline u32 pyi_disk_dev(const void *disk)
{
    if (!disk)
        return 0;
    u32 major = pyi_read32(disk, PYI_OFF_DISK_MAJOR);
    u32 minor = pyi_read32(disk, PYI_OFF_DISK_MINOR);
    return (major << 20) | (minor & 0xFFFFF);
}

/* bio_dev(bio): the dev_t of the bio's disk. */
static __always_inline u32 pyi_bio_dev(const void *bio)
{
    const void *bdev = (const void *)pyi_read64(bio, PYI_OFF_BIO_BDEV);
    return pyi_disk_dev((const void *)pyi_read64(bdev, PYI_OFF_BDEV_DISK));
}

static __always_inline u64 pyi_bio_sector(const void *bio)
{
    return pyi_read64(bio, PYI_OFF_BIO_SECTOR);
}

static __always_inline u32 pyi_bio_sectors(const void *bio)
{
    return pyi_read32(bio, PYI_OFF_BIO_SIZE) >> 9;
}

/* A request's disk dev_t (0 without one) and start sector (blk_rq_pos). */
static __always_inline u32 pyi_rq_dev(const void *rq)
{
    const void *q = (const void *)pyi_read64(rq, PYI_OFF_RQ_Q);
    return pyi_disk_dev((const void *)pyi_read64(q, PYI_OFF_Q_DISK));
}

static __always_inline u64 pyi_rq_sector(const void *rq)
{
    return pyi_read64(rq, PYI_OFF_RQ_SECTOR);
}

static __always_inline int pyi_opf_has(u32 opf, int bit)
{
    u32 n = pyi_offset(bit);
    return n < 32 && (opf >> n) & 1;
}

/* blk_fill_rwbs(rwbs, opf) as kernels 5.x-6.x write it: F (preflush), the
 * operation (W, D, DE, F, R, N), then F (fua), A (readahead), S (sync),
 * M (meta); packed into a word, first character lowest. */
static __always_inline u64 pyi_rwbs(u32 opf)
{
    u64 out = 0;
    int n = 0;
#define PYI_RWBS_PUT(c) do { out |= (u64)(c) << (8 * n); n++; } while (0)
    if (pyi_opf_has(opf, PYI_BIT_PREFLUSH))
        PYI_RWBS_PUT('F');
    u32 bits = pyi_offset(PYI_BIT_OP_BITS);
    u32 op = bits < 32 ? opf & ((1U << bits) - 1) : opf;
    if (op == pyi_offset(PYI_OP_WRITE))
        PYI_RWBS_PUT('W');
    else if (op == pyi_offset(PYI_OP_DISCARD))
        PYI_RWBS_PUT('D');
    else if (op == pyi_offset(PYI_OP_SECURE_ERASE)) {
        PYI_RWBS_PUT('D');
        PYI_RWBS_PUT('E');
    } else if (op == pyi_offset(PYI_OP_FLUSH))
        PYI_RWBS_PUT('F');
    else if (op == pyi_offset(PYI_OP_READ))
        PYI_RWBS_PUT('R');
    else
        PYI_RWBS_PUT('N');
    if (pyi_opf_has(opf, PYI_BIT_FUA))
        PYI_RWBS_PUT('F');
    if (pyi_opf_has(opf, PYI_BIT_RAHEAD))
        PYI_RWBS_PUT('A');
    if (pyi_opf_has(opf, PYI_BIT_SYNC))
        PYI_RWBS_PUT('S');
    if (pyi_opf_has(opf, PYI_BIT_META))
        PYI_RWBS_PUT('M');
#undef PYI_RWBS_PUT
    return out;
}

/* block_bio_queue(struct bio *bio) */
RAW_TRACEPOINT_PROBE(block_bio_queue)
{
    void *bio = (void *)ctx->args[0];
    return pyi_on_bio_queue(pyi_bio_dev(bio), pyi_bio_sector(bio), pyi_bio_sectors(bio),
                            pyi_rwbs(pyi_read32(bio, PYI_OFF_BIO_OPF)));
}

/* block_bio_remap(struct bio *bio, dev_t dev, sector_t from): dev and from
 * are where the bio was (the classic tracepoint's old_dev, old_sector). */
RAW_TRACEPOINT_PROBE(block_bio_remap)
{
    return pyi_on_bio_remap((u32)ctx->args[1], (u64)ctx->args[2]);
}

/* block_bio_backmerge(struct bio *bio) */
RAW_TRACEPOINT_PROBE(block_bio_backmerge)
{
    void *bio = (void *)ctx->args[0];
    return pyi_forget(pyi_bio_dev(bio), pyi_bio_sector(bio));
}

/* block_rq_merge(struct request *rq) */
RAW_TRACEPOINT_PROBE(block_rq_merge)
{
    void *rq = (void *)ctx->args[0];
    return pyi_forget(pyi_rq_dev(rq), pyi_rq_sector(rq));
}

/* block_bio_frontmerge(struct bio *bio) */
RAW_TRACEPOINT_PROBE(block_bio_frontmerge)
{
    void *bio = (void *)ctx->args[0];
    return pyi_on_bio_frontmerge(pyi_bio_dev(bio), pyi_bio_sector(bio), pyi_bio_sectors(bio));
}

/* block_rq_issue(struct request *rq) */
RAW_TRACEPOINT_PROBE(block_rq_issue)
{
    void *rq = (void *)ctx->args[0];
    return pyi_on_rq_issue(pyi_rq_dev(rq), pyi_rq_sector(rq), pyi_read32(rq, PYI_OFF_RQ_DATA_LEN));
}

/* block_bio_complete(struct request_queue *q, struct bio *bio) */
RAW_TRACEPOINT_PROBE(block_bio_complete)
{
    void *bio = (void *)ctx->args[1];
    u8 status = 0;
    if (bio)
        bpf_probe_read_kernel(&status, sizeof(status), (char *)bio + pyi_offset(PYI_OFF_BIO_STATUS));
    pyi_block_complete(pyi_bio_dev(bio), pyi_bio_sector(bio), pyi_blk_errno(status));
    return 0;
}

/* block_rq_complete(struct request *rq, blk_status_t error, unsigned int nr_bytes) */
RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    void *rq = (void *)ctx->args[0];
    pyi_block_complete(pyi_rq_dev(rq), pyi_rq_sector(rq), pyi_blk_errno((u8)ctx->args[1]));
    return 0;
}
#else
TRACEPOINT_PROBE(block, block_bio_queue)
{
    u64 rwbs = 0;
    bpf_probe_read_kernel(&rwbs, sizeof(rwbs), args->rwbs);
    return pyi_on_bio_queue(args->dev, args->sector, args->nr_sector, rwbs);
}

TRACEPOINT_PROBE(block, block_bio_remap)
{
    return pyi_on_bio_remap(args->old_dev, args->old_sector);
}

TRACEPOINT_PROBE(block, block_bio_backmerge)
{
    return pyi_forget(args->dev, args->sector);
}

TRACEPOINT_PROBE(block, block_rq_merge)
{
    return pyi_forget(args->dev, args->sector);
}

TRACEPOINT_PROBE(block, block_bio_frontmerge)
{
    return pyi_on_bio_frontmerge(args->dev, args->sector, args->nr_sector);
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    return pyi_on_rq_issue(args->dev, args->sector, args->bytes);
}

TRACEPOINT_PROBE(block, block_bio_complete)
{
    pyi_block_complete(args->dev, args->sector, args->error);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    pyi_block_complete(args->dev, args->sector, args->error);
    return 0;
}
#endif
