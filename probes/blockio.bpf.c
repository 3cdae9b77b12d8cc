/* block I/O family: requests from queue to completion, attributed to the
 * process that submitted them.
 *
 * block_bio_queue fires in the submitter's context; block_rq_issue and
 * block_rq_complete may run in a kworker or an interrupt, so the submitter is
 * remembered by (device, sector). The LRU map bounds bios that were merged into
 * another request and never complete under their own sector. The map is also
 * the list of requests in flight right now, with their age.
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
    block_inflight.update(&key, &rq);
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

TRACEPOINT_PROBE(block, block_rq_complete)
{
    struct pyi_rq_key key = { .dev = args->dev, .pad = 0, .sector = args->sector };
    struct pyi_rq *rq = block_inflight.lookup(&key);
    if (!rq)
        return 0;
    u64 now = bpf_ktime_get_ns();
    struct pyi_event *e = events.ringbuf_reserve(sizeof(struct pyi_event));
    if (!e) {
        pyi_count_lost(PYI_LOST_RINGBUF);
        block_inflight.delete(&key);
        return 0;
    }
    e->ts = rq->queued;
    e->dur = now - rq->queued;
    e->kind = PYI_KIND_BLOCK_IO;
    e->tgid = rq->tgid;
    e->tid = rq->tid;
    e->aux = args->error;
    e->ret = rq->issued ? (s64)(now - rq->issued) : -1;   /* device latency */
    e->a[0] = args->dev;
    e->a[1] = args->sector;
    e->a[2] = rq->bytes;
    e->a[3] = rq->rwbs;
    __builtin_memcpy(&e->comm, rq->comm, PYI_COMM_LEN);
    events.ringbuf_submit(e, 0);
    block_inflight.delete(&key);
    return 0;
}
