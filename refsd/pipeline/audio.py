"""The input's audio in a pseudonymized video: :class:`AudioCopy` (PyAV), used by
:class:`refsd.pipeline.video.VideoWriter`.

The first audio stream of the source file goes into the MP4 being written: its packets are
remuxed without re-encoding when MP4 carries the codec (:data:`REMUX_CODECS`), else it is
decoded and encoded as AAC. Its timing follows the video: time 0 is the source's first video
frame (audio before it is left out) and the audio is trimmed to the written video's duration
(to the packet: at most one packet, a few ms, beyond it); audio that ends earlier stays as it is
(silence after it). A problem with the audio never stops the video: an unreadable stream is left
out (``status`` "failed"), undecodable packets are skipped, a stream that breaks off ends there;
:attr:`AudioCopy.notes` says what happened.
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from itertools import chain
from pathlib import Path

__all__ = ["AudioCopy", "REMUX_CODECS"]

#: Audio codecs copied into MP4 as they are (others are transcoded to AAC).
REMUX_CODECS = frozenset({"aac", "mp3", "opus", "alac", "flac", "ac3", "eac3"})


def _errors() -> tuple:
    import av

    return (av.error.FFmpegError, ValueError, TypeError, OSError)


class AudioCopy:
    """The first audio stream of ``source`` into ``out`` (an output container before its first
    packet). ``status``: "none" (no audio stream), "copied" (remuxed or transcoded; see ``notes``),
    "failed" (unreadable: left out). :meth:`mux` as the video advances, :meth:`finish` at its end."""

    def __init__(self, source: str | Path, out):
        import av

        self.status, self.notes, self.seconds = "none", [], 0.0  # seconds of audio written
        self._out, self._in, self._queue, self._skipped, self._muxed = out, None, deque(), 0, 0
        try:
            self._in = av.open(str(source))
            if not self._in.streams.audio:
                self._close()
                return
            ia = self._in.streams.audio[0]
            self._ia = ia
            name = ia.codec_context.codec.canonical_name
            v = self._in.streams.video
            start = v[0].start_time * v[0].time_base if v and v[0].start_time is not None else 0
            self._shift = round(Fraction(start) / ia.time_base)  # the first video frame is time 0
            self._copy = name in REMUX_CODECS
            self._units = self._demux()
            first = next(self._units, None)  # the stream must give something before it gets an output stream
            if first is None:
                raise ValueError("the audio stream has no readable data")
            if self._copy:
                self._os = out.add_stream_from_template(ia)
                how = f"the input's {name} audio copied without re-encoding"
            else:
                rate = ia.rate if ia.rate in av.Codec("aac", "w").audio_rates else 48000
                n = ia.layout.nb_channels
                for layout in ([f"{n}c"] if 0 < n <= 8 else []) + ["stereo"]:  # a named layout AAC takes
                    kw = {"layout": av.AudioLayout(layout).name, "format": "fltp", "bit_rate": 64000 * min(n or 2, 2)}
                    trial = av.CodecContext.create("aac", "w")  # fails here, before the output has the stream
                    trial.rate = rate
                    for k, val in kw.items():
                        setattr(trial, k, val)
                    try:
                        trial.open()
                        break
                    except _errors():
                        if layout == "stereo":
                            raise
                self._os = out.add_stream("aac", rate=rate, **kw)
                how = f"the input's {name} audio transcoded to AAC ({kw['bit_rate'] // 1000} kb/s)"
        except _errors() as e:
            self.status = "failed"
            self.notes.append(f"audio left out: the input's audio cannot be read ({type(e).__name__}: {e})")
            self._close()
            return
        self.status, self._how = "copied", how
        self._units = chain([first], self._units)

    def _demux(self):
        """Source packets (copy) or decoded frames (transcode), shifted to the video's time 0;
        undecodable packets skipped; ends at the stream's end or where it breaks off."""
        it = self._in.demux(self._ia)
        while True:
            try:
                packet = next(it)
            except StopIteration:
                return
            except _errors() as e:
                if self._muxed or self._queue:
                    self.notes.append(f"audio ends early: the input's audio breaks off ({type(e).__name__}: {e})")
                    return
                raise
            if packet.dts is None or packet.pts is None or packet.size == 0:
                continue
            try:  # decoded in both cases: a damaged packet is skipped, not copied
                frames = self._ia.codec_context.decode(packet)
            except _errors():
                self._skipped += 1
                continue
            if self._copy:
                packet.pts, packet.dts = packet.pts - self._shift, packet.dts - self._shift
                yield packet
                continue
            for f in frames:
                if f.pts is not None:
                    f.pts -= self._shift
                yield f

    def _convert(self, unit) -> None:
        """One source unit into output packets on the queue, as ``(start s, end s, packet)``; what ends
        before the video's first frame is left out (an AAC priming packet ending at 0 is kept)."""
        if self._copy:
            packets = [unit]
        elif unit.pts is not None and unit.pts * unit.time_base + Fraction(unit.samples, unit.sample_rate) <= 0:
            return
        else:
            packets = self._os.encode(unit)
        for p in packets:
            if p.pts is not None:
                t = p.pts * p.time_base
                end = t + (p.duration or 0) * p.time_base
                if end >= 0:
                    self._queue.append((t, end, p))

    def mux(self, until: float | Fraction) -> None:
        """Write the packets that start before ``until`` seconds of the video."""
        if self.status != "copied":
            return
        while True:
            if not self._queue:
                try:
                    unit = next(self._units, None)
                    if unit is not None:
                        self._convert(unit)
                except _errors() as e:  # the encoder failed: the audio ends here
                    self.notes.append(f"audio ends early: {type(e).__name__}: {e}")
                    unit = None
                if unit is None:
                    self._units = iter(())
                    return
                continue
            t, end, p = self._queue[0]
            if t >= until:
                return
            self._queue.popleft()
            self._write(p, end)

    def _write(self, p, end) -> None:
        p.stream = self._os
        try:
            self._out.mux(p)
        except _errors():
            self._skipped += 1
            return
        self._muxed += 1
        self.seconds = max(self.seconds, float(end))

    def finish(self, duration: float | Fraction) -> None:
        """Write the audio up to the video's ``duration`` (seconds), the rest is left out."""
        if self.status == "copied":
            self.mux(duration)
            self._queue.clear()
            if not self._copy:  # the encoder's last packets (audio fed before the end)
                try:
                    for p in self._os.encode(None):
                        if p.pts is not None and p.pts * p.time_base < duration:
                            self._write(p, p.pts * p.time_base + (p.duration or 0) * p.time_base)
                except _errors() as e:
                    self.notes.append(f"audio: the encoder's last packets were lost ({type(e).__name__}: {e})")
            self.notes.insert(0, f"{self._how}: {self.seconds:.2f} s for {float(duration):.2f} s of video")
            if self._skipped:
                self.notes.append(f"audio: {self._skipped} damaged packets were skipped")
        self._close()

    def _close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None
