"""The command line of the web demo: load the model, start the server, print the page's address."""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from osum.web import __doc__ as PACKAGE_DOC


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m osum.web", description=PACKAGE_DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a training checkpoint (.ckpt) of any stage or an osum.export folder")
    p.add_argument("--flow", help="token2wav flow checkpoint or export folder: spoken output (S2S chat, TTS)")
    p.add_argument("--vocoder", help="vocoder checkpoint or export folder (default: the flow export's, else Griffin-Lim)")
    p.add_argument("--reference", help="a clip of the voice to speak in")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (0: any free port)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="longest audio clip taken")
    p.add_argument("--history", type=int, default=5, help="earlier turns a chat keeps (0: none)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="understanding: most tokens of an answer")
    p.add_argument("--max-reply-tokens", type=int, default=None,
                   help="most tokens of a chat reply, think and speech included (default: the output type's)")
    p.add_argument("--max-codes", type=int, default=500, help="TTS: most speech codes (25 a second)")
    p.add_argument("--sample", action="store_true", help="chat: the output types' sampling instead of greedy")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.vocoder and not args.flow:
        p.error("--vocoder needs --flow")
    if args.max_seconds <= 0:
        p.error("--max-seconds must be positive")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from osum.web.server import DemoServer
    from osum.web.service import DemoService

    try:
        service = DemoService.load(args.ckpt, args.flow, args.vocoder, args.reference, device=args.device,
                                   max_seconds=args.max_seconds, history=args.history,
                                   max_new_tokens=args.max_new_tokens, max_reply_tokens=args.max_reply_tokens, max_codes=args.max_codes,
                                   sample_chat=args.sample)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    try:
        server = DemoServer(service, args.host, args.port)
    except OSError as e:
        raise SystemExit(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    for mode in service.info()["modes"]:
        print(f"  {mode['label']}: " + ("available" if mode["available"] else f"unavailable ({mode['reason']})"))
    print(f"osum web demo: {server.url}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
