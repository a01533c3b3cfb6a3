import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { DeleteObjectCommand, GetObjectCommand, NoSuchKey, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Config } from '../config.js';

/**
 * Where uploaded files' bytes live (docs/files.md): one interface, a local directory (the default) and S3-compatible
 * object storage. Keys are made by the server (`storageKey`), never taken from a caller, and every driver checks
 * their shape again before using one.
 */
export interface FileStorage {
  readonly kind: 'local' | 's3';
  /**
   * Streams `body` to `key`, never holding it whole in memory. Resolves once the object is stored whole; when the
   * body fails (over-size, the client went away), rejects with the body's error and leaves nothing under the key.
   */
  put(key: string, body: Readable, contentType: string): Promise<void>;
  /** The object's bytes as a stream; undefined when it does not exist. */
  get(key: string): Promise<Readable | undefined>;
  /** Removes the object; a missing one is not an error. */
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

/** `<16 hex of the application id's SHA-256>/<file id>`: application ids may hold dots, so they never become a path. */
const KEY = /^[0-9a-f]{16}\/[0-9a-f]{24}$/;

function checkKey(key: string): string {
  if (!KEY.test(key)) throw new Error(`invalid storage key ${JSON.stringify(key)}`);
  return key;
}

export function createStorage(config: Pick<Config, 'fileStorage' | 'fileDir' | 'dataDir' | 's3Bucket' | 's3Region' | 's3Endpoint' | 's3AccessKeyId' | 's3SecretAccessKey' | 's3ForcePathStyle'>): FileStorage {
  if (config.fileStorage === 's3') {
    if (!config.s3Bucket) throw new Error('IMKIT_FILE_STORAGE=s3 needs IMKIT_S3_BUCKET');
    return new S3Storage(config);
  }
  return new LocalStorage(config.fileDir ?? path.join(config.dataDir, 'files'));
}

/** Files under a directory: written to a temporary name beside the final one, then renamed, so a reader never sees half a file. */
export class LocalStorage implements FileStorage {
  readonly kind = 'local';
  constructor(private readonly root: string) {}

  async put(key: string, body: Readable, _contentType: string): Promise<void> {
    const final = this.pathOf(key);
    await fs.promises.mkdir(path.dirname(final), { recursive: true });
    const temp = `${final}.${randomBytes(6).toString('hex')}.part`;
    try {
      await pipeline(body, fs.createWriteStream(temp, { flags: 'wx' }));
      await fs.promises.rename(temp, final);
    } catch (err) {
      await fs.promises.rm(temp, { force: true });
      throw err;
    }
  }

  async get(key: string): Promise<Readable | undefined> {
    const stream = fs.createReadStream(this.pathOf(key));
    return new Promise((resolve, reject) => {
      stream.once('open', () => resolve(stream));
      stream.once('error', (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? resolve(undefined) : reject(err)));
    });
  }

  async delete(key: string): Promise<void> {
    await fs.promises.rm(this.pathOf(key), { force: true });
  }

  async close(): Promise<void> {}

  private pathOf(key: string): string {
    const p = path.resolve(this.root, checkKey(key));
    // The key's shape already rules out "..", separators and absolute paths; this says so once more.
    if (!p.startsWith(path.resolve(this.root) + path.sep)) throw new Error('storage key outside the file directory');
    return p;
  }
}

/**
 * S3 or any S3-compatible store (MinIO, Ceph, R2, ...), through the AWS SDK: requests signed with SigV4, uploads
 * streamed as a multipart upload of 8 MB parts, two in flight (so an upload holds at most ~16 MB in memory; a file
 * smaller than one part is one PutObject). Checksums are sent only where S3 requires them: many S3-compatible
 * servers do not accept the SDK's newer trailing-checksum encoding.
 */
export class S3Storage implements FileStorage {
  readonly kind = 's3';
  private readonly client: S3Client;
  private readonly bucket: string;

  constructor(config: Pick<Config, 's3Bucket' | 's3Region' | 's3Endpoint' | 's3AccessKeyId' | 's3SecretAccessKey' | 's3ForcePathStyle'>) {
    this.bucket = config.s3Bucket!;
    this.client = new S3Client({
      region: config.s3Region,
      endpoint: config.s3Endpoint,
      forcePathStyle: config.s3ForcePathStyle,
      // Without keys the SDK's own chain applies (AWS_* variables, shared config, instance or task roles).
      credentials: config.s3AccessKeyId && config.s3SecretAccessKey ? { accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey } : undefined,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async put(key: string, body: Readable, contentType: string): Promise<void> {
    let failed: unknown;
    body.once('error', (err) => (failed = err));
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: checkKey(key), Body: body, ContentType: contentType },
      partSize: 8 * 1024 * 1024,
      queueSize: 2,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      throw failed ?? err;
    }
    // The SDK may finish an upload of what it read before the body failed: then the object is not whole.
    if (failed) {
      await this.delete(key).catch(() => undefined);
      throw failed;
    }
  }

  async get(key: string): Promise<Readable | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: checkKey(key) }));
      return res.Body as Readable;
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: checkKey(key) }));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
