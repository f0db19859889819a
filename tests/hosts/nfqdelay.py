#!/usr/bin/env python3
"""Holds every packet of an NFQUEUE for a fixed time, then accepts it.

    nfqdelay.py NETNS_PATH QUEUE DELAY_MS READY_FILE

A stand-in for `tc qdisc ... netem delay`, which the test machines' kernel
lacks. The netlink socket is opened inside the netns at NETNS_PATH (setns
there and back), so this process stays in the root netns and is not one of
the test host's processes. Packets keep their order. READY_FILE is created
once the queue is bound, so the caller adds its iptables rule after that. On
SIGTERM every held packet is accepted before exiting. Standard library only.
"""

import collections
import ctypes
import os
import select
import signal
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1


def nla(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + bytes(-length % 4)


def nfq_message(msg_type, queue, attrs):
    """nlmsghdr + nfgenmsg (res_id = queue, big endian) + attributes."""
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, NLM_F_REQUEST, 0, 0)
    return header + body


def socket_in_netns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    there = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(there, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the root netns")
    finally:
        os.close(home)
        os.close(there)


def packet_ids(data):
    """Packet ids of the NFQNL_MSG_PACKET messages in one recv buffer."""
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            return
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a, end = off + 20, off + length  # after nlmsghdr (16) + nfgenmsg (4)
            while a + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from(">I", data, a + 4)[0]
                a += (alen + 3) & ~3
        elif kind == NLMSG_ERROR:
            err = struct.unpack_from("=i", data, off + 16)[0]
            if err:
                print(f"nfqdelay: netlink error {err}", file=sys.stderr, flush=True)
        off += (length + 3) & ~3


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    netns, queue, delay, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000.0, sys.argv[4]

    sock = socket_in_netns(netns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    sock.send(nfq_message(NFQNL_MSG_CONFIG, queue, [nla(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))]))
    sock.send(nfq_message(NFQNL_MSG_CONFIG, queue, [
        nla(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
        nla(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", 65536)),
    ]))

    held = collections.deque()  # (due, packet id), in arrival order

    def accept(packet_id):
        sock.send(nfq_message(NFQNL_MSG_VERDICT, queue, [nla(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id))]))

    def release_all_and_exit(*_):
        while held:
            accept(held.popleft()[1])
        sys.exit(0)

    signal.signal(signal.SIGTERM, release_all_and_exit)
    signal.signal(signal.SIGINT, release_all_and_exit)
    with open(ready, "w"):
        pass

    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else None
        if select.select([sock], [], [], timeout)[0]:
            try:
                data = sock.recv(1 << 20)
            except OSError:  # ENOBUFS: the kernel dropped messages; carry on
                data = b""
            due = time.monotonic() + delay
            held.extend((due, pid) for pid in packet_ids(data))
        now = time.monotonic()
        while held and held[0][0] <= now:
            accept(held.popleft()[1])


if __name__ == "__main__":
    main()
