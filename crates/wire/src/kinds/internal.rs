//! Payloads of the agent's own kinds: loss. (The cgroup kinds are never shipped.)

use peregrine_event::LossInfo;

use crate::pb;

pub(super) fn encode_loss(l: &LossInfo) -> pb::LossInfo {
    pb::LossInfo {
        kernel_ringbuf_full: l.kernel_ringbuf_full,
        kernel_no_scratch: l.kernel_no_scratch,
        user_queue_full: l.user_queue_full,
        downstream: l.downstream,
        tick: l.tick,
    }
}

pub(super) fn decode_loss(l: &pb::LossInfo) -> LossInfo {
    LossInfo {
        kernel_ringbuf_full: l.kernel_ringbuf_full,
        kernel_no_scratch: l.kernel_no_scratch,
        user_queue_full: l.user_queue_full,
        downstream: l.downstream,
        tick: l.tick,
    }
}
