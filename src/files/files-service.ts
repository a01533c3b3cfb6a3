import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { AppConfigService } from '../chat/config-service.js';
import type { ChatContext } from '../chat/chat-context.js';
import { authorizeFile, type Caller, type FileAction } from '../chat/policy.js';
import type { RoomsService } from '../chat/rooms-service.js';
import type { Config } from '../config.js';
import { AppError, invalidRequest } from '../errors.js';
import { newObjectId } from '../lib/ids.js';
import { cleanMimeType, mimeAllowed, parseMimeList } from '../lib/mime.js';
import { randomHex } from '../lib/secrets.js';
import { type FileRow, FilesRepo } from '../store/files-repo.js';
import { describeImage } from './images.js';
import { Mp4Probe, type VideoFacts } from './mp4.js';
import type { FileStorage } from './storage.js';

type Json = Record<string, unknown>;

export type FileSettings = Pick<Config, 'fileMaxBytes' | 'fileTypes' | 'fileUrlTtlMs' | 'imageMaxBytes' | 'imageMaxPixels'>;

/** An uploaded part as the transport hands it over: the bytes still arriving. */
export interface IncomingFile {
  filename: string | undefined;
  mimeType: string | undefined;
  stream: Readable;
}

/** The query of a signed URL. */
export interface UrlSignature {
  app: string;
  expires: string;
  signature: string;
}

export const BUCKET_PATTERN = '^[A-Za-z0-9._-]{1,64}$';
const BUCKET = new RegExp(BUCKET_PATTERN);
export const MAX_EXTRA_BYTES = 16 * 1024;

/**
 * Uploaded files (docs/files.md): streamed to the storage driver with their size and type limits checked on the way,
 * their metadata in the store, images measured and given a thumbnail, MP4 videos measured, access decided by the one
 * policy (`authorizeFile`), and signed URLs for callers that cannot send headers (an `<img>`).
 */
export class FilesService {
  constructor(
    private readonly ctx: ChatContext,
    private readonly rooms: RoomsService,
    private readonly appConfig: AppConfigService,
    readonly storage: FileStorage,
    private readonly settings: FileSettings,
  ) {}

  /**
   * `POST /files/:bucket`: stores the file and answers its metadata. `extra.roomId` (or `roomID`, `room`) names the
   * room the file is shared in: the caller must be allowed to send there. Nothing stays stored when a check fails,
   * the file is too large, or the upload breaks off.
   */
  async upload(caller: Caller, bucket: string, extra: Json, file: IncomingFile, options: { probeVideo?: boolean } = {}): Promise<{ file: Json; video?: VideoFacts }> {
    const { stream } = file;
    let row: FileRow | undefined;
    // The part may fail (the body ends inside the file, the client goes away) while the checks below wait for the
    // store: listen from the start, and fail the storage write through the meter once there is one. The listener
    // stays: the parser may report the same failure again after the write has given up.
    let broken = false;
    let meter: Meter | undefined;
    const breakOff = (err: Error) => {
      broken = true;
      meter?.destroy(err);
    };
    stream.on('error', breakOff);
    stream.on('close', () => {
      if (!stream.readableEnded) breakOff(new Error('the file part closed before its end'));
    });
    const cut = () => invalidRequest('The upload ended before the file was complete (a malformed or cut multipart body)');
    try {
      checkBucket(bucket);
      const roomId = roomOf(extra);
      if (roomId !== undefined) {
        const { snap } = await this.rooms.accessCached(caller, roomId, 'send');
        if (snap.room.status === 0 && !caller.platform) throw new AppError('ROOM_FROZEN', 'This room is frozen: no files can be shared in it');
      }
      const limits = await this.limits(caller.appId);
      const mimeType = cleanMimeType(file.mimeType);
      if (!limits.types.every((list) => mimeAllowed(mimeType, list))) throw new AppError('FILE_TYPE_NOT_ALLOWED', `Files of type ${mimeType} are not accepted here`, { allowedTypes: limits.types.at(-1) });

      const now = this.ctx.clock.now();
      const id = newObjectId(now);
      meter = new Meter(limits.maxBytes, mimeType.startsWith('image/') ? this.settings.imageMaxBytes : 0, options.probeVideo === true);
      const key = storageKey(caller.appId, id);
      // The storage driver learns of a failure through its own listener; this one keeps a late repeat harmless.
      meter.on('error', () => undefined);
      if (broken || stream.destroyed) throw cut();
      stream.pipe(meter);
      try {
        await this.storage.put(key, meter, mimeType);
      } catch (err) {
        if (meter.error) throw meter.error;
        if (broken) throw cut();
        throw storageError(err);
      }
      row = {
        app_id: caller.appId,
        id,
        bucket,
        filename: cleanFilename(file.filename),
        mime_type: mimeType,
        size: meter.bytes,
        md5: meter.md5(),
        room_id: roomId ?? null,
        uploader_id: caller.userId,
        extra: JSON.stringify(extra),
        storage_key: key,
        width: null,
        height: null,
        duration_ms: null,
        thumbnail_id: null,
        thumbnail_of: null,
        created_at: now,
      };
      const video = meter.video();
      if (video) Object.assign(row, { width: video.width, height: video.height, duration_ms: Math.round(video.duration * 1000) });
      const image = meter.image();
      const facts = image ? await describeImage(image, this.settings.imageMaxPixels) : undefined;
      let thumb: FileRow | undefined;
      if (facts) {
        row.width = facts.width;
        row.height = facts.height;
        const thumbId = newObjectId(now);
        thumb = {
          ...row,
          id: thumbId,
          filename: `${row.filename.replace(/\.[^.]*$/, '')}.thumbnail.jpg`,
          mime_type: 'image/jpeg',
          size: facts.thumbnail.length,
          md5: createHash('md5').update(facts.thumbnail).digest('hex'),
          storage_key: storageKey(caller.appId, thumbId),
          width: null,
          height: null,
          thumbnail_of: id,
        };
        await this.storage.put(thumb.storage_key, Readable.from([facts.thumbnail]), 'image/jpeg').catch((err) => {
          throw storageError(err);
        });
        row.thumbnail_id = thumbId;
      }
      try {
        await this.ctx.db.transaction().execute(async (trx) => {
          const r = new FilesRepo(trx);
          await r.insert(row!);
          if (thumb) await r.insert(thumb);
        });
      } catch (err) {
        await Promise.all([this.storage.delete(key), thumb && this.storage.delete(thumb.storage_key)].map((p) => p?.catch(() => undefined)));
        throw err;
      }
      return { file: renderFile(row), video };
    } finally {
      // Whatever was not read of the part (a refusal before storing) is read and dropped, so the request ends.
      if (!stream.readableEnded) {
        stream.unpipe();
        stream.resume();
      }
    }
  }

  /**
   * `POST /files/video-info`: the duration (seconds), width and height of an MP4/MOV video read from its boxes, and,
   * with `autoUpload` ({bucket, extra}), the file stored as an upload (`originalId`). No frame is decoded: there is
   * no thumbnail of a video (docs/files.md). Fields that could not be read are left out.
   */
  async videoInfo(caller: Caller, file: IncomingFile, autoUpload: { bucket: string; extra: Json } | undefined): Promise<Json> {
    if (autoUpload) {
      const { file: stored, video } = await this.upload(caller, autoUpload.bucket, autoUpload.extra, file, { probeVideo: true });
      return { originalId: stored._id, ...video, file: stored };
    }
    const { maxBytes } = await this.limits(caller.appId);
    const probe = new Mp4Probe();
    let bytes = 0;
    file.stream.on('error', () => undefined);
    try {
      for await (const chunk of file.stream as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        if (bytes > maxBytes) throw new AppError('FILE_TOO_LARGE', `The file is larger than the ${maxBytes} bytes allowed`, { maxFileSize: maxBytes });
        probe.push(chunk);
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw invalidRequest('The upload ended before the file was complete (a malformed or cut multipart body)');
    } finally {
      if (!file.stream.readableEnded) file.stream.resume();
    }
    return { ...probe.result() };
  }

  /** The file's row, if the caller may read (or delete) it; the same answer for another tenant's id as for none. */
  async find(caller: Caller, bucket: string, id: string, action: FileAction = 'read'): Promise<FileRow> {
    const row = await this.row(caller.appId, bucket, id);
    const snap = row.room_id === null ? undefined : await this.ctx.roomCache.get(caller.appId, row.room_id);
    authorizeFile(caller, { roomId: row.room_id, uploaderId: row.uploader_id }, snap, this.ctx.clock.now(), action);
    return row;
  }

  /** `GET /files/:bucket/:id/metadata`. */
  async metadata(caller: Caller, bucket: string, id: string): Promise<Json> {
    return renderFile(await this.find(caller, bucket, id));
  }

  /** A file through a signed URL: no credentials, the signature and its expiry instead. */
  async findSigned(bucket: string, id: string, sig: UrlSignature): Promise<FileRow> {
    const expires = Number(sig.expires);
    if (!/^\d{1,16}$/.test(sig.expires) || !/^[0-9a-f]{64}$/.test(sig.signature)) throw new AppError('SIGNED_URL_INVALID', 'This file URL is not validly signed');
    const key = await new FilesRepo(this.ctx.db).urlKey(sig.app, () => randomHex(32), this.ctx.clock.now()).catch(() => undefined);
    const want = key === undefined ? undefined : signUrl(key, sig.app, bucket, id, expires);
    if (!want || !timingSafeEqual(Buffer.from(want, 'hex'), Buffer.from(sig.signature, 'hex'))) throw new AppError('SIGNED_URL_INVALID', 'This file URL is not validly signed');
    if (expires <= this.ctx.clock.now()) throw new AppError('SIGNED_URL_EXPIRED', 'This file URL has expired: ask for a new one');
    return this.row(sig.app, bucket, id);
  }

  /** The bytes of a file found by `find` or `findSigned`. */
  async open(row: FileRow): Promise<Readable> {
    const stream = await this.storage.get(row.storage_key).catch((err) => {
      throw storageError(err);
    });
    if (!stream) throw new AppError('FILE_NOT_FOUND', `File ${row.id} not found`);
    return stream;
  }

  /** `?signedUrlOnly=1`: a URL that reads the file without headers until it expires (IMKIT_FILE_URL_TTL). */
  async signedUrl(caller: Caller, bucket: string, id: string, base: string): Promise<{ url: string; expiresAt: string; expiresAtMS: number }> {
    await this.find(caller, bucket, id);
    const now = this.ctx.clock.now();
    const expires = now + this.settings.fileUrlTtlMs;
    const key = await new FilesRepo(this.ctx.db).urlKey(caller.appId, () => randomHex(32), now);
    const query = new URLSearchParams({ app: caller.appId, expires: String(expires), signature: signUrl(key, caller.appId, bucket, id, expires) });
    return { url: `${base}/files/${encodeURIComponent(bucket)}/${id}?${query}`, expiresAt: new Date(expires).toISOString(), expiresAtMS: expires };
  }

  /** `DELETE /files/:bucket/:id`: the file and its thumbnail. */
  async delete(caller: Caller, bucket: string, id: string): Promise<Json> {
    await this.find(caller, bucket, id, 'delete');
    const rows = await new FilesRepo(this.ctx.db).delete(caller.appId, id);
    // The rows are gone first: a storage failure leaves bytes no one can reach, never a row without its bytes.
    await Promise.all(rows.map((r) => this.storage.delete(r.storage_key).catch(() => undefined)));
    return { deletedCount: rows.length, _id: id, id };
  }

  /**
   * The size and type limits of an application: the server's, narrowed by its featureFlags (`maxFileSize` may lower
   * the size, never raise it; a type must pass both the server's and `allowedFileTypes`).
   */
  async limits(appId: string): Promise<{ maxBytes: number; types: string[][] }> {
    const flags = await this.appConfig.featureFlags(appId);
    if (flags.enableFileSharing === false) throw new AppError('FILE_SHARING_DISABLED', 'File sharing is turned off for this application');
    const own = flags.maxFileSize;
    const maxBytes = typeof own === 'number' && Number.isSafeInteger(own) && own > 0 ? Math.min(own, this.settings.fileMaxBytes) : this.settings.fileMaxBytes;
    const types = [this.settings.fileTypes];
    if (typeof flags.allowedFileTypes === 'string') {
      try {
        types.push(parseMimeList(flags.allowedFileTypes));
      } catch {
        // A stored value the config check would refuse now (written before it existed) narrows nothing.
      }
    }
    return { maxBytes, types };
  }

  private async row(appId: string, bucket: string, id: string): Promise<FileRow> {
    checkBucket(bucket);
    const row = /^[0-9a-f]{24}$/.test(id) ? await new FilesRepo(this.ctx.db).get(appId, id) : undefined;
    if (!row || row.bucket !== bucket) throw new AppError('FILE_NOT_FOUND', `File ${id.slice(0, 64)} not found in bucket ${bucket}`);
    return row;
  }
}

/** The File object of the SDKs (GridFS names and the newer ones). */
export function renderFile(row: FileRow): Json {
  const out: Json = {
    _id: row.id,
    id: row.id,
    bucketName: row.bucket,
    filename: row.filename,
    name: row.filename,
    mimetype: row.mime_type,
    contentType: row.mime_type,
    length: row.size,
    size: row.size,
    md5: row.md5,
    uploadDate: new Date(row.created_at).toISOString(),
    uploadDateMS: row.created_at,
    createdAt: new Date(row.created_at).toISOString(),
    createdAtMS: row.created_at,
    client: row.uploader_id,
    room: row.room_id,
    extra: JSON.parse(row.extra) as unknown,
    url: `/files/${encodeURIComponent(row.bucket)}/${row.id}`,
  };
  if (row.width !== null) out.width = row.width;
  if (row.height !== null) out.height = row.height;
  if (row.duration_ms !== null) out.duration = row.duration_ms / 1000;
  if (row.thumbnail_id !== null) {
    out.thumbnailId = row.thumbnail_id;
    out.thumbnailUrl = `/files/${encodeURIComponent(row.bucket)}/${row.thumbnail_id}`;
  }
  if (row.thumbnail_of !== null) out.thumbnailOf = row.thumbnail_of;
  return out;
}

/** The room an upload's `extra` names: `roomId` (Vue SDK), `roomID` (video-info) or `room`. */
function roomOf(extra: Json): string | undefined {
  const v = extra.roomId ?? extra.roomID ?? extra.room;
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || v.length > 128) throw invalidRequest('Invalid field extra.roomId: must be a room id (a string of 1-128 characters)');
  return v;
}

function checkBucket(bucket: string): void {
  if (!BUCKET.test(bucket)) throw invalidRequest('Invalid bucket: 1-64 letters, digits, ".", "_" or "-"');
}

function storageKey(appId: string, id: string): string {
  return `${createHash('sha256').update(appId).digest('hex').slice(0, 16)}/${id}`;
}

function signUrl(key: string, appId: string, bucket: string, id: string, expires: number): string {
  return createHmac('sha256', Buffer.from(key, 'hex')).update(`imkit-file\n${appId}\n${bucket}\n${id}\n${expires}`).digest('hex');
}

/** A file name as stored: no directories, no control characters, at most 255 characters; "file" when none is left. */
function cleanFilename(name: string | undefined): string {
  const base = (name ?? '').split(/[\\/]/).pop() ?? '';
  // eslint-disable-next-line no-control-regex
  const clean = base.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, 255);
  return clean === '' || clean === '.' || clean === '..' ? 'file' : clean;
}

function storageError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const e = new AppError('FILE_STORAGE_UNAVAILABLE', 'The file storage could not be reached; try again later');
  e.cause = err;
  return e;
}

/**
 * Passes the upload through, counting its bytes (failing with FILE_TOO_LARGE past the limit), hashing it (MD5, the
 * GridFS field the SDKs know), keeping the first `keepBytes` of an image for measuring it (dropped when it is
 * larger), and probing an MP4's boxes when asked.
 */
class Meter extends Transform {
  bytes = 0;
  error: AppError | undefined;
  private readonly hash = createHash('md5');
  private kept: Buffer[] | undefined;
  private readonly probe: Mp4Probe | undefined;

  constructor(
    private readonly maxBytes: number,
    private readonly keepBytes: number,
    probeVideo: boolean,
  ) {
    super();
    this.kept = keepBytes > 0 ? [] : undefined;
    this.probe = probeVideo ? new Mp4Probe() : undefined;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) {
      this.error = new AppError('FILE_TOO_LARGE', `The file is larger than the ${this.maxBytes} bytes allowed`, { maxFileSize: this.maxBytes });
      done(this.error);
      return;
    }
    this.hash.update(chunk);
    if (this.kept) {
      if (this.bytes <= this.keepBytes) this.kept.push(chunk);
      else this.kept = undefined;
    }
    this.probe?.push(chunk);
    done(null, chunk);
  }

  md5(): string {
    return this.hash.digest('hex');
  }

  image(): Buffer | undefined {
    return this.kept && this.bytes > 0 ? Buffer.concat(this.kept) : undefined;
  }

  video(): VideoFacts | undefined {
    return this.probe?.result();
  }
}
