#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_api (test/fuzz/corpus/): one small input
per group of operations, so that fuzzing starts from inputs that reach
each of them.  The opcodes and argument bytes follow decode_one in
fuzz_api.c; keep the two in step.  Run it from anywhere:
python3 test/fuzz/make_corpus.py"""
import os

(WRITE, WRITE_SOME, EMIT, CANCEL, CLOSE, RELEASE, DESTROY, CONTEXT_POST, STRAND_POST, POLL,
 POLL_ONE, READ_SOME, READ_ALL, CLOSE_READ_END, SHUTDOWN, SENDFILE, SEND_TIMEOUT, WATERMARKS,
 TIMER_CREATE, TIMER_EXPIRES_AFTER, TIMER_WAIT, TIMER_CANCEL, TIMER_DESTROY, REOPEN,
 SECOND_OWNER, PAUSE, INSPECT) = range(27)

# Handler actions (decode_then): codes below 128 do nothing.
(NOTHING, THEN_CANCEL, THEN_CLOSE, THEN_RELEASE, THEN_DESTROY, THEN_EMIT, THEN_POST, THEN_WRITE,
 THEN_STOP, THEN_KINDS) = range(10)
NO_SIGNAL = 7                       # decode_signal: code % 8 from 3 up is none
TERMINAL, PARTIAL, TOTAL = 0, 1, 2  # decode_cancel_type: code % 3
PIPE, PIPE_PRIVATE, SOCKET, SOCKET_PRIVATE = 0, 1, 2, 3   # slots: even ones on the shared strand
END_WITH_PENDING_WORK = 1           # the flags byte
# async_sendfile's mode byte: 0..2 its signal, 3..5 none, 6 and 7 a bad fd
# or offset, which the library must refuse.
SENDFILE_NO_SIGNAL, SENDFILE_BAD_FD, SENDFILE_BAD_OFFSET = 3, 6, 7


def then(kind, signal=0, cancel_type=TERMINAL):
    if kind == NOTHING:
        return 0
    for code in range(128, 256):
        if 1 + code % (THEN_KINDS - 1) == kind and (code >> 3) % 3 == signal and (code >> 5) % 3 == cancel_type:
            return code
    raise ValueError("no code for that action")


def write(slot, buffers, signal=NO_SIGNAL, action=NOTHING, some=False):
    """buffers: (length code, offset code) pairs, at most 8."""
    out = [WRITE_SOME if some else WRITE, slot, len(buffers)]
    for length, offset in buffers:
        out += [length, offset]
    return out + [signal, action]


def long_write(slot, which, length, empty_head=False, some=False):
    """which: 0..3, IOV_MAX - 1, IOV_MAX, IOV_MAX + 1, 2 * IOV_MAX + 3 buffers."""
    return [WRITE_SOME if some else WRITE, slot, 0xF0 + which, length | (0x80 if empty_head else 0),
            9, NO_SIGNAL, 0]


BIG = 255           # decode_length: 32 KiB
seeds = {
    "writes": [0] + write(PIPE, [(10, 1), (200, 2)]) + write(SOCKET, [(100, 3)])
    + write(PIPE_PRIVATE, [(0, 0)]) + write(SOCKET_PRIVATE, [])
    + [POLL, READ_ALL, PIPE, READ_ALL, SOCKET, POLL],
    "write_some": [0] + write(SOCKET, [(BIG, 5), (BIG, 6)], some=True)
    + write(PIPE, [(BIG, 7)], some=True) + write(PIPE, [], some=True)
    + [READ_SOME, SOCKET, 3, POLL_ONE, READ_SOME, PIPE, 0, POLL],
    "many_buffers": [0] + long_write(PIPE, 0, 3) + long_write(SOCKET, 1, 5, some=True)
    + long_write(PIPE_PRIVATE, 2, 2, empty_head=True, some=True)
    + long_write(SOCKET_PRIVATE, 3, 1, empty_head=True) + [READ_ALL, PIPE, POLL],
    "cancel_signals": [0] + write(SOCKET, [(BIG, 1)], signal=0) + write(SOCKET, [(BIG, 2)], signal=1)
    + write(SOCKET, [(BIG, 3)], signal=2) + write(SOCKET, [(10, 3)], signal=0)
    + [EMIT, 0, TERMINAL, EMIT, 1, PARTIAL, EMIT, 2, TOTAL, POLL, READ_ALL, SOCKET, POLL],
    "descriptor_ends": [0] + write(PIPE, [(BIG, 1)]) + write(PIPE_PRIVATE, [(BIG, 1)])
    + write(SOCKET, [(BIG, 1)]) + write(SOCKET_PRIVATE, [(BIG, 1)])
    + [INSPECT, PIPE, CANCEL, PIPE, CLOSE, PIPE_PRIVATE, RELEASE, SOCKET, DESTROY, SOCKET_PRIVATE]
    + [INSPECT, PIPE, INSPECT, PIPE_PRIVATE, INSPECT, SOCKET, POLL]
    + write(PIPE_PRIVATE, [(4, 0)]) + [CLOSE, PIPE_PRIVATE, RELEASE, PIPE_PRIVATE, POLL],
    "handler_actions": [0] + write(PIPE, [(20, 0)], action=then(THEN_WRITE))
    + write(PIPE, [(20, 0)], action=then(THEN_CANCEL)) + write(PIPE, [(BIG, 0)])
    + write(SOCKET, [(20, 0)], action=then(THEN_CLOSE)) + write(SOCKET, [(BIG, 0)])
    + write(PIPE_PRIVATE, [(20, 0)], action=then(THEN_RELEASE))
    + write(SOCKET_PRIVATE, [(20, 0)], action=then(THEN_DESTROY))
    + write(SOCKET_PRIVATE, [(BIG, 1)], signal=1)
    + write(PIPE, [(1, 0)], action=then(THEN_EMIT, signal=1, cancel_type=PARTIAL))
    + write(PIPE, [(1, 0)], action=then(THEN_POST)) + [POLL, READ_ALL, PIPE, POLL, POLL],
    "posts": [0, CONTEXT_POST, 0, PIPE, STRAND_POST, 0, SOCKET, CONTEXT_POST, then(THEN_CLOSE), PIPE]
    + [STRAND_POST, then(THEN_POST), SOCKET, CONTEXT_POST, then(THEN_STOP), PIPE, STRAND_POST, 0, PIPE]
    + [POLL_ONE, POLL_ONE, POLL, POLL],
    "read_end_closed": [0] + write(PIPE, [(BIG, 0)]) + write(SOCKET, [(BIG, 0)])
    + [READ_SOME, PIPE, 5, CLOSE_READ_END, PIPE, CLOSE_READ_END, SOCKET]
    + write(PIPE, [(9, 0)]) + write(SOCKET, [(9, 0)], some=True) + [SHUTDOWN, SOCKET, 0, POLL],
    "shutdown": [0] + write(SOCKET, [(200, 0)]) + [SHUTDOWN, SOCKET, 0] + write(SOCKET, [(5, 0)])
    + write(SOCKET, []) + [SHUTDOWN, SOCKET, 0, SHUTDOWN, PIPE, then(THEN_WRITE)]
    + write(PIPE, [(5, 1)]) + [SHUTDOWN, SOCKET_PRIVATE, 0, CLOSE, SOCKET_PRIVATE]
    + [READ_ALL, SOCKET, POLL],
    "sendfile": [0, SENDFILE, SOCKET, 0, 0, 0x40, 0, SENDFILE_NO_SIGNAL, 0,   # 16 KiB from 0
                 SENDFILE, PIPE, 0xB0, 0, 0x20, 0, SENDFILE_NO_SIGNAL, 0,      # past the end: ENODATA
                 SENDFILE, PIPE_PRIVATE, 0, 0, 0, 0, SENDFILE_NO_SIGNAL, 0,    # count 0
                 SENDFILE, SOCKET, 0, 0, 0, 9, SENDFILE_BAD_FD, 0,             # refused
                 SENDFILE, SOCKET, 0, 0, 0, 9, SENDFILE_BAD_OFFSET, 0,         # refused
                 SENDFILE, SOCKET_PRIVATE, 0, 5, 0x80, 0, 0, then(THEN_POST)]  # 32 KiB, signal 0
    + [EMIT, 0, TERMINAL, READ_ALL, SOCKET, POLL, READ_ALL, PIPE, POLL],
    "send_timeout": [0, SEND_TIMEOUT, SOCKET, 20] + write(SOCKET, [(BIG, 0)])
    + write(SOCKET, [(BIG, 1)], some=True) + [SEND_TIMEOUT, PIPE, 1] + write(PIPE, [(BIG, 2)])
    + [PAUSE, 255, PAUSE, 255, POLL, SEND_TIMEOUT, PIPE, 0, READ_ALL, SOCKET, POLL],
    "watermarks": [0, WATERMARKS, SOCKET, 8, 8, 1] + write(SOCKET, [(BIG, 0)])
    + [WATERMARKS, PIPE, 0, 2, 1] + write(PIPE, [(BIG, 1)]) + [POLL, READ_ALL, SOCKET, POLL]
    + [WATERMARKS, PIPE, 0, 0, 0, WATERMARKS, SOCKET, 3, 3, 3] + write(SOCKET, [(BIG, 2)])
    + [WATERMARKS, SOCKET, 1, 1, 2, CLOSE, SOCKET, POLL],
    "timers": [0, TIMER_CREATE, 0, TIMER_CREATE, 5, TIMER_EXPIRES_AFTER, 0, 50]
    + [TIMER_WAIT, 0, NO_SIGNAL, 0, PIPE, TIMER_WAIT, 0, 0, then(THEN_CLOSE), SOCKET]
    + [TIMER_EXPIRES_AFTER, 1, 200, TIMER_WAIT, 1, 1, then(THEN_EMIT, signal=2), PIPE]
    + write(SOCKET, [(BIG, 0)], signal=2) + [EMIT, 0, TOTAL, TIMER_WAIT, 2, NO_SIGNAL, 0, PIPE]
    + [TIMER_CREATE, 2, TIMER_WAIT, 2, NO_SIGNAL, 0, PIPE, TIMER_CANCEL, 2, TIMER_DESTROY, 1]
    + [PAUSE, 255, POLL, PAUSE, 255, POLL],
    "reopen": [0, SECOND_OWNER, PIPE] + write(PIPE, [(30, 0)]) + [CLOSE, PIPE, REOPEN, PIPE]
    + write(PIPE, [(30, 1)]) + [DESTROY, SOCKET, REOPEN, SOCKET, SECOND_OWNER, SOCKET]
    + write(SOCKET, [(30, 2)]) + [RELEASE, SOCKET_PRIVATE, REOPEN, SOCKET_PRIVATE, POLL],
    "destroy_with_work_pending": [END_WITH_PENDING_WORK]
    + write(SOCKET, [(BIG, 0)], action=then(THEN_CLOSE))
    + write(SOCKET, [(BIG, 1)], signal=0, action=then(THEN_WRITE))
    + write(PIPE, [(BIG, 2)], action=then(THEN_DESTROY)) + write(PIPE, [(BIG, 3)])
    + write(PIPE_PRIVATE, [(BIG, 3)], action=then(THEN_RELEASE))
    + [WATERMARKS, SOCKET_PRIVATE, 1, 1, 1] + write(SOCKET_PRIVATE, [(BIG, 0)])
    + [TIMER_CREATE, 0, TIMER_EXPIRES_AFTER, 0, 255, TIMER_WAIT, 0, NO_SIGNAL, then(THEN_POST), PIPE]
    + [STRAND_POST, then(THEN_CANCEL), SOCKET],
}

corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(corpus, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(corpus, name), "wb") as f:
        f.write(bytes(data))
