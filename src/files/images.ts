import sharp from 'sharp';

// libvips keeps decoded images and operations in a process-wide cache; uploads are seen once, so caching them
// only holds memory.
sharp.cache(false);

export interface ImageFacts {
  width: number;
  height: number;
  /** A JPEG at most THUMBNAIL_EDGE pixels on its longer side. */
  thumbnail: Buffer;
}

export const THUMBNAIL_EDGE = 320;

/**
 * Width and height (as displayed: EXIF rotation applied) and a thumbnail of an image, through sharp (libvips);
 * undefined when the bytes are not an image sharp reads, or it has more than `maxPixels` pixels (sharp refuses to
 * decode those: a small file can declare a huge canvas).
 */
export async function describeImage(bytes: Buffer, maxPixels: number): Promise<ImageFacts | undefined> {
  try {
    const meta = await sharp(bytes, { limitInputPixels: maxPixels }).metadata();
    const width = meta.autoOrient?.width ?? meta.width;
    const height = meta.autoOrient?.height ?? meta.height;
    if (!width || !height) return undefined;
    const thumbnail = await sharp(bytes, { limitInputPixels: maxPixels, animated: false })
      .rotate()
      .resize(THUMBNAIL_EDGE, THUMBNAIL_EDGE, { fit: 'inside', withoutEnlargement: true })
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: 80 })
      .toBuffer();
    return { width, height, thumbnail };
  } catch {
    return undefined;
  }
}
