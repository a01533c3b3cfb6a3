/**
 * Duration and picture size of an MP4/MOV (ISO base media) file, read from its `moov` box while the file streams
 * past: top-level boxes are skipped by their sizes (the media data is never held), only `moov` (usually well under
 * a megabyte; at most MAX_MOOV) is kept and parsed: `mvhd` gives timescale and duration, the `tkhd` of the first
 * video track (`hdlr` type `vide`) its width and height. Written by hand: the pure-JavaScript MP4 readers on npm
 * either want the whole file in memory or are demuxers far larger than these few fields need.
 */
export interface VideoFacts {
  /** Seconds. */
  duration: number;
  width: number;
  height: number;
}

const MAX_MOOV = 32 * 1024 * 1024;

export class Mp4Probe {
  private header = Buffer.alloc(0);
  /** Bytes of the current top-level box still to skip (Infinity: to the end of the file). */
  private skip = 0;
  private moov: Buffer[] | undefined;
  private moovLeft = 0;
  private done = false;
  private found: VideoFacts | undefined;
  private boxes = 0;

  /** Feeds the next bytes of the file. */
  push(chunk: Buffer): void {
    let at = 0;
    while (!this.done && at < chunk.length) {
      if (this.moov) {
        const take = Math.min(this.moovLeft, chunk.length - at);
        this.moov.push(chunk.subarray(at, at + take));
        this.moovLeft -= take;
        at += take;
        if (this.moovLeft === 0) {
          this.found = parseMoov(Buffer.concat(this.moov));
          this.moov = undefined;
          this.done = true;
        }
        continue;
      }
      if (this.skip > 0) {
        const take = Math.min(this.skip, chunk.length - at);
        this.skip -= take;
        at += take;
        continue;
      }
      const need = this.header.length < 8 ? 8 : 16;
      const take = Math.min(need - this.header.length, chunk.length - at);
      this.header = Buffer.concat([this.header, chunk.subarray(at, at + take)]);
      at += take;
      if (this.header.length < 8) continue;
      const size32 = this.header.readUInt32BE(0);
      if (size32 === 1 && this.header.length < 16) continue;
      const type = this.header.toString('latin1', 4, 8);
      const headerLength = size32 === 1 ? 16 : 8;
      const size = size32 === 1 ? Number(this.header.readBigUInt64BE(8)) : size32 === 0 ? Infinity : size32;
      this.header = Buffer.alloc(0);
      // The first box of an MP4 is ftyp (or, in old QuickTime files, one of a few others); anything else is not one.
      if (this.boxes++ === 0 && !['ftyp', 'moov', 'mdat', 'free', 'wide', 'skip'].includes(type)) this.done = true;
      else if (size < headerLength) this.done = true;
      else if (type === 'moov') {
        if (size > MAX_MOOV) this.done = true;
        else {
          this.moov = [];
          this.moovLeft = size - headerLength;
        }
      } else this.skip = size - headerLength;
    }
  }

  /** What was found: undefined for a file that is not an MP4, or whose moov was missing or unreadable. */
  result(): VideoFacts | undefined {
    return this.found;
  }
}

function* children(buf: Buffer, start = 0, end = buf.length): Generator<{ type: string; body: Buffer }> {
  let at = start;
  while (at + 8 <= end) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    let headerLength = 8;
    if (size === 1) {
      if (at + 16 > end) return;
      size = Number(buf.readBigUInt64BE(at + 8));
      headerLength = 16;
    } else if (size === 0) size = end - at;
    if (size < headerLength || at + size > end) return;
    yield { type, body: buf.subarray(at + headerLength, at + size) };
    at += size;
  }
}

function parseMoov(moov: Buffer): VideoFacts | undefined {
  try {
    let duration: number | undefined;
    let picture: { width: number; height: number } | undefined;
    for (const box of children(moov)) {
      if (box.type === 'mvhd') duration = movieDuration(box.body);
      else if (box.type === 'trak' && !picture) picture = videoTrackSize(box.body);
    }
    if (duration === undefined || !picture) return undefined;
    return { duration, ...picture };
  } catch {
    return undefined;
  }
}

function movieDuration(b: Buffer): number | undefined {
  const version = b.readUInt8(0);
  const timescale = version === 1 ? b.readUInt32BE(20) : b.readUInt32BE(12);
  const duration = version === 1 ? Number(b.readBigUInt64BE(24)) : b.readUInt32BE(16);
  if (!timescale) return undefined;
  return Math.round((duration / timescale) * 1000) / 1000;
}

function videoTrackSize(trak: Buffer): { width: number; height: number } | undefined {
  let size: { width: number; height: number } | undefined;
  let video = false;
  for (const box of children(trak)) {
    if (box.type === 'tkhd') {
      // After version/flags, times, track id, reserved and duration come 8 reserved bytes, layer, group, volume,
      // 2 reserved bytes and the 36-byte matrix; then width and height in 16.16 fixed point.
      const at = (box.body.readUInt8(0) === 1 ? 36 : 24) + 8 + 8 + 36;
      size = { width: Math.round(box.body.readUInt32BE(at) / 65536), height: Math.round(box.body.readUInt32BE(at + 4) / 65536) };
    } else if (box.type === 'mdia') {
      for (const m of children(box.body)) if (m.type === 'hdlr' && m.body.toString('latin1', 8, 12) === 'vide') video = true;
    }
  }
  return video && size && size.width > 0 && size.height > 0 ? size : undefined;
}
