import { Readable } from 'node:stream';
import { callerOf } from '../../chat/policy.js';
import { AppError, invalidRequest } from '../../errors.js';
import { BUCKET_PATTERN, type IncomingFile, MAX_EXTRA_BYTES } from '../../files/files-service.js';
import type { FileRow } from '../../store/files-repo.js';
import { jsonTextTooDeep, tooDeep } from '../../lib/json-depth.js';
import type { Services } from '../../services.js';
import { defineRoutes, FileReply, type Part } from '../route.js';

const H = `-H "IM-CLIENT-KEY: $CLIENT_KEY" -H "IM-Authorization: $TOKEN"`;
const bucketParams = { type: 'object', required: ['bucket'], properties: { bucket: { type: 'string', pattern: BUCKET_PATTERN } } };
const fileParams = { type: 'object', required: ['bucket', 'id'], properties: { bucket: { type: 'string', pattern: BUCKET_PATTERN }, id: { type: 'string', minLength: 1, maxLength: 64 } } };
/** How deep an upload's `extra` (or video-info's `autoUpload`) may nest. */
const MAX_EXTRA_DEPTH = 16;
/** Types a browser may show in place; anything else (HTML, SVG, scripts, ...) is sent as an attachment. */
const INLINE = /^(image\/(png|jpeg|gif|webp|avif|bmp)|video\/(mp4|webm|ogg|quicktime)|audio\/[a-z0-9.+-]+|application\/pdf|text\/plain)$/;

/**
 * Files as IMKIT's SDKs call them (spec §5; docs/files.md): upload (multipart `extra` then `file`), download with
 * credentials or through a signed URL, metadata, delete, and the video facts of `POST /files/video-info`.
 */
export function fileRoutes({ files }: Services) {
  return defineRoutes([
    {
      method: 'POST',
      url: '/files/video-info',
      auth: 'either',
      scope: 'messages:write',
      multipart: true,
      summary:
        'Duration (seconds), width and height of an MP4/MOV video (multipart `file`); with `autoUpload` (JSON `{"bucket","extra"}`, before `file`) the video is stored as an upload too and `originalId` names it. No thumbnail of a video is made',
      example: `curl -X POST $BASE/files/video-info ${H} -F 'autoUpload={"bucket":"chatserver-upload","extra":{"roomID":"demo"}}' -F file=@clip.mp4`,
      handler: async ({ actor, parts }) => {
        let autoUpload: { bucket: string; extra: Record<string, unknown> } | undefined;
        for await (const part of parts!) {
          if (part.type === 'field') {
            if (part.name === 'autoUpload') {
              const v = jsonField(part, 'autoUpload');
              if (typeof v.bucket !== 'string') throw invalidRequest('Invalid field autoUpload.bucket: must be a bucket name');
              if (v.extra !== undefined && !isObject(v.extra)) throw invalidRequest('Invalid field autoUpload.extra: must be a JSON object');
              autoUpload = { bucket: v.bucket, extra: (v.extra as Record<string, unknown> | undefined) ?? {} };
            }
            continue;
          }
          if (part.name !== 'file') throw wrongFileField(part);
          return files.videoInfo(callerOf(actor), incoming(part), autoUpload);
        }
        throw invalidRequest('Missing required field: file');
      },
    },
    {
      method: 'POST',
      url: '/files/:bucket',
      auth: 'either',
      scope: 'messages:write',
      multipart: true,
      summary:
        'Upload a file (multipart: optional `extra`, a JSON object sent before `file`; `extra.roomId` shares it in a room the caller may send to). Returns the File with its id as `_id` and `id`, size, type, md5, and width, height and a thumbnail for images. Size and type limits: IMKIT_FILE_MAX_SIZE, IMKIT_FILE_TYPES and the application\'s featureFlags',
      example: `curl -X POST $BASE/files/chatserver-upload ${H} -F 'extra={"roomId":"demo"}' -F file=@photo.jpg`,
      schema: { params: bucketParams },
      handler: async ({ actor, params, parts }) => {
        const caller = callerOf(actor);
        let extra: Record<string, unknown> = {};
        let stored: Record<string, unknown> | undefined;
        try {
          for await (const part of parts!) {
            if (part.type === 'field') {
              if (part.name !== 'extra') continue;
              // The room decides who may read the file: it must be known before the bytes are stored.
              if (stored) throw invalidRequest('Field extra must come before field file');
              extra = jsonField(part, 'extra');
              continue;
            }
            if (part.name !== 'file') throw wrongFileField(part);
            stored = (await files.upload(caller, params.bucket, extra, incoming(part))).file;
          }
        } catch (err) {
          if (stored) await files.delete(caller, params.bucket, stored._id as string).catch(() => undefined);
          throw err;
        }
        if (!stored) throw invalidRequest('Missing required field: file');
        return stored;
      },
    },
    {
      method: 'GET',
      url: '/files/:bucket/:id',
      auth: 'either',
      scope: 'messages:read',
      signedAccess: true,
      summary:
        'The file’s bytes (HEAD: its headers), for members of its room, its uploader and the API key. `signedUrlOnly=1` (or true) answers `{url}` instead: a URL that reads the file without headers until it expires (IMKIT_FILE_URL_TTL); such a URL carries `app`, `expires` and `signature`',
      example: `curl -G $BASE/files/chatserver-upload/<file id> ${H} -d signedUrlOnly=1`,
      schema: {
        params: fileParams,
        querystring: {
          type: 'object',
          properties: {
            signedUrlOnly: { type: 'string', enum: ['1', 'true', '0', 'false'] },
            app: { type: 'string', maxLength: 64 },
            expires: { type: 'string', maxLength: 32 },
            signature: { type: 'string', maxLength: 128 },
          },
        },
      },
      handler: async ({ actor, params, query, method, origin }) => {
        let row: FileRow;
        if (query.signature !== undefined && !actor) {
          if (typeof query.app !== 'string' || typeof query.expires !== 'string') throw new AppError('SIGNED_URL_INVALID', 'This file URL is not validly signed');
          row = await files.findSigned(params.bucket, params.id, { app: query.app, expires: query.expires, signature: query.signature });
        } else {
          const caller = callerOf(actor);
          if (query.signedUrlOnly === '1' || query.signedUrlOnly === 'true') return files.signedUrl(caller, params.bucket, params.id, origin);
          row = await files.find(caller, params.bucket, params.id);
        }
        // HEAD answers the headers only: the stored bytes are not opened.
        const body = method === 'HEAD' ? Readable.from([]) : await files.open(row);
        return new FileReply(fileHeaders(row), body);
      },
    },
    {
      method: 'GET',
      url: '/files/:bucket/:id/metadata',
      auth: 'either',
      scope: 'messages:read',
      summary: 'The File object of an upload (name, size, type, md5, room, uploader, dimensions, thumbnail), for those who may read it',
      example: `curl $BASE/files/chatserver-upload/<file id>/metadata ${H}`,
      schema: { params: fileParams },
      handler: async ({ actor, params }) => files.metadata(callerOf(actor), params.bucket, params.id),
    },
    {
      method: 'DELETE',
      url: '/files/:bucket/:id',
      auth: 'either',
      scope: 'messages:write',
      summary: 'Delete a file and its thumbnail: its uploader, the owner or a manager of its room, or the API key',
      example: `curl -X DELETE $BASE/files/chatserver-upload/<file id> ${H}`,
      schema: { params: fileParams },
      handler: async ({ actor, params }) => files.delete(callerOf(actor), params.bucket, params.id),
    },
  ]);
}

function incoming(part: Extract<Part, { type: 'file' }>): IncomingFile {
  return { filename: part.filename, mimeType: part.mimeType, stream: part.stream };
}

function wrongFileField(part: Extract<Part, { type: 'file' }>): AppError {
  part.stream.resume();
  return invalidRequest(`The file must be sent in the field "file" (got "${part.name.slice(0, 64)}")`);
}

/** A field holding a JSON object (`extra`, `autoUpload`), bounded in size and depth before it is parsed. */
function jsonField(part: Extract<Part, { type: 'field' }>, name: string): Record<string, unknown> {
  if (part.truncated || Buffer.byteLength(part.value) > MAX_EXTRA_BYTES) throw invalidRequest(`Field ${name} is larger than ${MAX_EXTRA_BYTES} bytes`);
  if (jsonTextTooDeep(part.value, MAX_EXTRA_DEPTH)) throw tooDeep(MAX_EXTRA_DEPTH);
  let value: unknown;
  try {
    value = JSON.parse(part.value);
  } catch {
    throw invalidRequest(`Field ${name} must be a JSON object (it is not valid JSON)`);
  }
  if (!isObject(value)) throw invalidRequest(`Field ${name} must be a JSON object`);
  return value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A stored file's answer headers. What a browser could run (HTML, SVG, ...) is never shown in place: it comes as an
 * attachment, with no sniffing and a sandboxing CSP, so an upload cannot script this server's origin.
 */
function fileHeaders(row: FileRow): Record<string, string | number> {
  const disposition = INLINE.test(row.mime_type) ? 'inline' : 'attachment';
  const ascii = row.filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return {
    'content-type': row.mime_type,
    'content-length': row.size,
    'content-disposition': `${disposition}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(row.filename)}`,
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'none'; sandbox",
    'cache-control': 'private, max-age=3600',
    etag: `"${row.md5}"`,
  };
}
