"""The local model server that `pod model up` starts (written beside the model by it).

Serves one GGUF with llama.cpp (the prebuilt server inside the xllamacpp wheel) on
127.0.0.1 at a port the kernel picks, writes {"url", "pid"} to the ready file once
it listens, and runs until SIGTERM or SIGINT. Its arguments come from pods; it
needs nothing but xllamacpp.
"""

import argparse
import json
import os
import signal
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--cache-ram-mib", type=int, required=True)
    ap.add_argument("--slots", required=True)
    args = ap.parse_args()

    # Block the stop signals before the server starts its threads, so that they
    # inherit the mask and sigwait below is the one place that receives them.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)

    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.hostnames = ["127.0.0.1"]
    p.port = 0
    p.n_ctx = args.ctx
    p.n_parallel = 1
    p.cpuparams.n_threads = args.threads
    p.cpuparams_batch.n_threads = args.threads
    p.use_jinja = True
    p.ui = False
    p.model_alias = {args.alias}
    with open(args.template, encoding="utf-8") as f:
        p.chat_template = f.read()
    # Prompt states kept in RAM beyond the one slot, so that pods taking turns
    # on it do not read their whole prompts again (0: none).
    p.cache_ram_mib = args.cache_ram_mib
    # Enables POST /slots/0?action=erase, which the real-model tests use so that
    # no test reuses another's prompt cache.
    p.slot_save_path = args.slots

    server = xllamacpp.Server(p)
    url = server.listening_address
    tmp = args.ready + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"url": url, "pid": os.getpid()}, f)
    os.replace(tmp, args.ready)
    print(f"pods: serving {args.model} as {args.alias} at {url}", flush=True)

    got = signal.sigwait(stop)
    print(f"pods: stopping on signal {got}", flush=True)
    sys.stdout.flush()
    # The server's threads hold no state worth saving: leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
