#include "cimageio.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>
#include <jerror.h> /* the warning codes (JWRN_*) */
#include <png.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t cap, const char *fmt, ...) {
  if (err && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int cimg_sniff(const uint8_t *b, size_t n) {
  if (n >= 8 && png_sig_cmp((png_const_bytep)b, 0, 8) == 0) return CIMG_PNG;
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return CIMG_JPEG;
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return CIMG_BMP;
  return CIMG_UNKNOWN;
}

void cimg_free(cimg_image *img) {
  if (img && img->pixels) {
    free(img->pixels);
    img->pixels = NULL;
  }
}

/* ---- EXIF orientation ---- */

/* The orientation (TIFF tag 0x0112 of IFD0, 1...8) recorded in an EXIF block: the TIFF structure, with or
   without the "Exif\0\0" prefix of a JPEG APP1 segment. A missing, malformed or out-of-range value is
   1 (as stored), as OpenCV treats it: a damaged EXIF block must not make a readable photo unreadable. */
static int exif_orientation(const uint8_t *t, size_t n) {
  if (n >= 6 && memcmp(t, "Exif\0\0", 6) == 0) {
    t += 6;
    n -= 6;
  }
  if (n < 8) return 1;
  int le;
  if (t[0] == 'I' && t[1] == 'I') le = 1;
  else if (t[0] == 'M' && t[1] == 'M') le = 0;
  else return 1;
#define U16(p) (le ? (uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 : (uint32_t)(p)[0] << 8 | (uint32_t)(p)[1])
#define U32(p) (le ? U16(p) | U16((p) + 2) << 16 : U16(p) << 16 | U16((p) + 2))
  if (U16(t + 2) != 42) return 1;
  size_t ifd = U32(t + 4);
  if (ifd > n || n - ifd < 2) return 1;
  size_t count = U16(t + ifd);
  for (size_t i = 0; i < count; i++) {
    size_t e = ifd + 2 + 12 * i;
    if (e > n || n - e < 12) break;
    if (U16(t + e) == 0x0112 && U16(t + e + 2) == 3 /* SHORT */) {
      uint32_t v = U16(t + e + 8);
      return v >= 1 && v <= 8 ? (int)v : 1;
    }
  }
#undef U32
#undef U16
  return 1;
}

/* Turns stored pixels upright: output pixel (x, y) comes from stored pixel src(x, y) of the EXIF
   orientation (2 mirrored, 3 rotated 180°, 4 flipped, 5 transposed, 6 to be turned 90° clockwise,
   7 transversed, 8 to be turned 90° counter-clockwise). Orientations 5-8 swap width and height. */
static int apply_orientation(cimg_image *img, int orientation, char *err, size_t cap) {
  if (orientation <= 1 || orientation > 8) return 0;
  const int w = img->width, h = img->height, c = img->channels;
  const int swap = orientation >= 5;
  const int ow = swap ? h : w, oh = swap ? w : h;
  uint8_t *out = malloc((size_t)w * h * c);
  if (!out) {
    cimg_free(img); /* a failed decode hands nothing back */
    return fail(err, cap, "out of memory turning the image upright");
  }
  for (int y = 0; y < oh; y++) {
    for (int x = 0; x < ow; x++) {
      int sx, sy;
      switch (orientation) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x; break; /* 8 */
      }
      memcpy(out + ((size_t)y * ow + x) * c, img->pixels + ((size_t)sy * w + sx) * c, (size_t)c);
    }
  }
  free(img->pixels);
  img->pixels = out;
  img->width = ow;
  img->height = oh;
  img->orientation = orientation;
  return 0;
}

/* ---- PNG ---- */

typedef struct {
  const uint8_t *data;
  size_t size, pos;
} png_mem_reader;

typedef struct {
  char *err;
  size_t cap;
} png_err_ctx;

static void png_mem_read(png_structp png, png_bytep out, png_size_t n) {
  png_mem_reader *r = (png_mem_reader *)png_get_io_ptr(png);
  if (r->size - r->pos < n) png_error(png, "file is truncated");
  memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
  png_err_ctx *ctx = (png_err_ctx *)png_get_error_ptr(png);
  fail(ctx->err, ctx->cap, "PNG: %s", msg);
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* warnings (e.g. sRGB profile notes) are not failures */
}

static int decode_png(const uint8_t *bytes, size_t n, cimg_image *out, char *err, size_t cap) {
  png_err_ctx ctx = {err, cap};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
  if (!png) return fail(err, cap, "PNG: out of memory");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return fail(err, cap, "PNG: out of memory");
  }
  png_mem_reader reader = {bytes, n, 0};
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    free(pixels);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  png_set_read_fn(png, &reader, png_mem_read);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
  /* 16-bit samples keep their high byte, as OpenCV's imread reads them into an 8-bit image; they are read
     whole first, to see whether every one fits in 8 bits (below). */
  int wide = depth == 16;
  if ((size_t)w * h > (size_t)1 << 28) {
    png_destroy_read_struct(&png, &info, NULL);
    return fail(err, cap, "PNG of %ux%u pixels is too large", (unsigned)w, (unsigned)h);
  }
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_set_strip_alpha(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  if (channels != 1 && channels != 3) {
    png_destroy_read_struct(&png, &info, NULL);
    return fail(err, cap, "PNG with %d channels after conversion is not supported", channels);
  }
  size_t samples = (size_t)w * h * channels;
  pixels = malloc(samples * (wide ? 2 : 1));
  rows = malloc(sizeof(png_bytep) * h);
  if (!pixels || !rows) png_error(png, "out of memory");
  for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * channels * (wide ? 2 : 1);
  png_read_image(png, rows);
  png_read_end(png, info); /* into info: an eXIf chunk may also follow the image data */
  free(rows);
  rows = NULL;
  if (wide) {
    /* PNG stores samples big-endian: the high byte comes first. A file whose samples all lie in 0…255,
       not all 0 (8-bit values, a mask of 0/255 or class indices, saved in a 16-bit file), has only zero
       high bytes: read as imread reads it, it would be all black, and its labels would vanish. */
    int high = 0, low = 0;
    for (size_t i = 0; i < samples; i++) {
      high |= pixels[2 * i];
      low |= pixels[2 * i + 1];
      pixels[i] = pixels[2 * i];
    }
    if (high == 0 && low != 0) {
      free(pixels);
      png_destroy_read_struct(&png, &info, NULL);
      return fail(err, cap, "16-bit PNG whose values all lie in 0…255: read as OpenCV reads it (the high byte of "
                            "each sample) it would be all black; save it with 8 bits per sample");
    }
    uint8_t *shrunk = realloc(pixels, samples);
    if (shrunk) pixels = shrunk;
  }
  int orientation = 1;
  png_uint_32 exif_size = 0;
  png_bytep exif = NULL;
  if (png_get_eXIf_1(png, info, &exif_size, &exif) != 0 && exif) orientation = exif_orientation(exif, exif_size);
  png_destroy_read_struct(&png, &info, NULL);
  out->width = (int)w;
  out->height = (int)h;
  out->channels = channels;
  out->pixels = pixels;
  return apply_orientation(out, orientation, err, cap);
}

/* ---- JPEG ---- */

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char *err;
  size_t cap;
} jpeg_err_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_err_ctx *ctx = (jpeg_err_ctx *)cinfo->err;
  char msg[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, msg);
  fail(ctx->err, ctx->cap, "JPEG: %s", msg);
  longjmp(ctx->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level) {
  /* Level -1 is a warning; nothing is printed. Those that mean image data was lost or made up (a
     truncated stream padded with grey, a corrupt entropy-coded segment) are counted, and the decoder
     turns them into an error once the image is read. Header oddities that cost no pixel (an unknown
     JFIF revision, stray bytes before a marker), which OpenCV reads past, are not. */
  if (level >= 0) return;
  switch (cinfo->err->msg_code) {
  case JWRN_JPEG_EOF:
  case JWRN_HIT_MARKER:
  case JWRN_MUST_RESYNC:
  case JWRN_HUFF_BAD_CODE:
  case JWRN_BOGUS_PROGRESSION:
  case JWRN_NOT_SEQUENTIAL:
    cinfo->err->num_warnings++;
    break;
  default:
    break;
  }
}

static int decode_jpeg(const uint8_t *bytes, size_t n, cimg_image *out, char *err, size_t cap) {
  struct jpeg_decompress_struct cinfo;
  jpeg_err_ctx jerr;
  uint8_t *volatile pixels = NULL;
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = jpeg_on_error;
  jerr.pub.emit_message = jpeg_on_message;
  jerr.err = err;
  jerr.cap = cap;
  if (setjmp(jerr.jump)) {
    free(pixels);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, (unsigned char *)bytes, (unsigned long)n);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF); /* APP1: EXIF, for the orientation */
  jpeg_read_header(&cinfo, TRUE);
  /* Before start_decompress, which for a progressive file allocates buffers for the whole declared
     size: a corrupt header claiming 60000×60000 must not cost gigabytes first. */
  if ((size_t)cinfo.image_width * cinfo.image_height > (size_t)1 << 28) {
    int iw = (int)cinfo.image_width, ih = (int)cinfo.image_height;
    jpeg_destroy_decompress(&cinfo);
    return fail(err, cap, "JPEG of %dx%d pixels is too large", iw, ih);
  }
  int orientation = 1;
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
      orientation = exif_orientation(m->data, m->data_length);
      break;
    }
  }
  /* CMYK and YCCK (print workflows) come out of libjpeg as four channels, turned into RGB below. */
  int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = cmyk ? JCS_CMYK : cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
  if ((size_t)w * h > (size_t)1 << 28) {
    jpeg_destroy_decompress(&cinfo);
    return fail(err, cap, "JPEG of %dx%d pixels is too large", w, h);
  }
  pixels = malloc((size_t)w * h * c);
  if (!pixels) {
    jpeg_destroy_decompress(&cinfo);
    return fail(err, cap, "JPEG: out of memory");
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels + (size_t)cinfo.output_scanline * w * c;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  if (cmyk) {
    /* OpenCV's conversion of libjpeg's CMYK samples (as stored: Adobe files keep them inverted), in place:
       each of R, G, B is k − (255 − c)·k / 256 with c its own ink (C, M, Y), in integers. */
    size_t count = (size_t)w * h;
    for (size_t i = 0; i < count; i++) {
      int cy = pixels[4 * i], ma = pixels[4 * i + 1], ye = pixels[4 * i + 2], k = pixels[4 * i + 3];
      pixels[3 * i] = (uint8_t)(k - ((255 - cy) * k >> 8));
      pixels[3 * i + 1] = (uint8_t)(k - ((255 - ma) * k >> 8));
      pixels[3 * i + 2] = (uint8_t)(k - ((255 - ye) * k >> 8));
    }
    c = 3;
  }
  /* libjpeg pads a truncated stream with grey and only warns; a corrupt file must not pass as an image. */
  long warnings = jerr.pub.num_warnings;
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (warnings > 0) {
    free(pixels);
    return fail(err, cap, "JPEG is truncated or corrupt (%ld decoder warnings)", warnings);
  }
  out->width = w;
  out->height = h;
  out->channels = c;
  out->pixels = pixels;
  return apply_orientation(out, orientation, err, cap);
}

/* ---- BMP ---- */

/* Uncompressed Windows bitmaps (crack datasets such as CrackTree260 ship their masks so): 1, 4 and 8 bits
   through a palette, 24-bit BGR and 32-bit BGRX, bottom-up or top-down rows padded to 4 bytes. A palette
   of greys gives a grey image, anything else RGB. RLE and 16-bit bitmaps are refused by name. */
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static int decode_bmp(const uint8_t *b, size_t n, cimg_image *out, char *err, size_t cap) {
  if (n < 26) return fail(err, cap, "BMP: file is truncated");
  size_t data = le32(b + 10), header = le32(b + 14);
  int64_t w, h;
  int bpp;
  uint32_t compression = 0, colours = 0;
  size_t entry = 4; /* palette entry size */
  if (header == 12) { /* BITMAPCOREHEADER */
    w = le16(b + 18);
    h = (int16_t)le16(b + 20);
    bpp = (int)le16(b + 24);
    entry = 3;
  } else if (header >= 40 && n >= 14 + 40) {
    w = (int32_t)le32(b + 18);
    h = (int32_t)le32(b + 22);
    bpp = (int)le16(b + 28);
    compression = le32(b + 30);
    colours = le32(b + 46);
  } else {
    return fail(err, cap, "BMP: unknown header (size %zu) or file is truncated", header);
  }
  /* BI_BITFIELDS with 32 bits: the usual BGRX layout is read; other masks are refused below. */
  if (compression == 3 && bpp == 32 && header >= 52 && n >= 14 + 52) {
    if (le32(b + 54) != 0x00FF0000u || le32(b + 58) != 0x0000FF00u || le32(b + 62) != 0x000000FFu)
      return fail(err, cap, "BMP with unusual 32-bit channel masks is not supported (save it as PNG)");
  } else if (compression != 0) {
    return fail(err, cap, "compressed BMP (RLE or bit fields, type %u) is not supported (save it as PNG)", compression);
  }
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32)
    return fail(err, cap, "%d-bit BMP is not supported (save it as PNG)", bpp);
  int top_down = h < 0;
  if (h < 0) h = -h;
  if (w <= 0 || h <= 0) return fail(err, cap, "BMP: bad size %lldx%lld", (long long)w, (long long)h);
  if ((uint64_t)w * (uint64_t)h > (uint64_t)1 << 28) return fail(err, cap, "BMP of %lldx%lld pixels is too large", (long long)w, (long long)h);
  uint8_t palette[256][3];
  int grey = 1;
  if (bpp <= 8) {
    size_t count = colours ? colours : (size_t)1 << bpp;
    if (count > 256) return fail(err, cap, "BMP: palette of %zu colours", count);
    size_t at = 14 + header;
    if (at > n || (n - at) / entry < count) return fail(err, cap, "BMP: file is truncated (palette)");
    memset(palette, 0, sizeof(palette));
    for (size_t i = 0; i < count; i++) {
      const uint8_t *p = b + at + i * entry;
      palette[i][0] = p[2];
      palette[i][1] = p[1];
      palette[i][2] = p[0];
      if (p[0] != p[1] || p[1] != p[2]) grey = 0;
    }
  } else {
    grey = 0;
  }
  size_t stride = ((size_t)w * bpp + 31) / 32 * 4;
  if (data > n || (n - data) / stride < (size_t)h) return fail(err, cap, "BMP: file is truncated");
  int c = grey ? 1 : 3;
  uint8_t *pixels = malloc((size_t)w * h * c);
  if (!pixels) return fail(err, cap, "BMP: out of memory");
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *row = b + data + (size_t)(top_down ? y : h - 1 - y) * stride;
    uint8_t *dst = pixels + (size_t)y * w * c;
    for (int64_t x = 0; x < w; x++) {
      const uint8_t *rgb;
      uint8_t direct[3];
      if (bpp <= 8) {
        int bit = (int)(x * bpp);
        int index = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1 << bpp) - 1);
        rgb = palette[index];
      } else {
        const uint8_t *p = row + x * (bpp / 8);
        direct[0] = p[2];
        direct[1] = p[1];
        direct[2] = p[0];
        rgb = direct;
      }
      if (grey) dst[x] = rgb[0];
      else memcpy(dst + x * 3, rgb, 3);
    }
  }
  out->width = (int)w;
  out->height = (int)h;
  out->channels = c;
  out->pixels = pixels;
  return 0;
}

int cimg_decode(const uint8_t *bytes, size_t n, cimg_image *out, char *err, size_t cap) {
  memset(out, 0, sizeof(*out));
  out->orientation = 1;
  switch (cimg_sniff(bytes, n)) {
    case CIMG_PNG: return decode_png(bytes, n, out, err, cap);
    case CIMG_JPEG: return decode_jpeg(bytes, n, out, err, cap);
    case CIMG_BMP: return decode_bmp(bytes, n, out, err, cap);
    default: return fail(err, cap, "not a PNG, JPEG or BMP file");
  }
}

/* ---- encoding ---- */

typedef struct {
  uint8_t *data;
  size_t size, capacity;
  int failed;
} png_mem_writer;

static void png_mem_write(png_structp png, png_bytep in, png_size_t n) {
  png_mem_writer *w = (png_mem_writer *)png_get_io_ptr(png);
  if (w->size + n > w->capacity) {
    size_t cap = w->capacity ? w->capacity * 2 : 65536;
    while (cap < w->size + n) cap *= 2;
    uint8_t *grown = realloc(w->data, cap);
    if (!grown) png_error(png, "out of memory");
    w->data = grown;
    w->capacity = cap;
  }
  memcpy(w->data + w->size, in, n);
  w->size += n;
}

static void png_mem_flush(png_structp png) { (void)png; }

int cimg_encode_png(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_len, char *err,
                    size_t cap) {
  if (channels != 1 && channels != 3) return fail(err, cap, "PNG: %d channels (need 1 or 3)", channels);
  png_err_ctx ctx = {err, cap};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
  if (!png) return fail(err, cap, "PNG: out of memory");
  png_infop info = png_create_info_struct(png);
  png_mem_writer writer = {NULL, 0, 0, 0};
  if (!info || setjmp(png_jmpbuf(png))) {
    free(writer.data);
    png_destroy_write_struct(&png, &info);
    return info ? -1 : fail(err, cap, "PNG: out of memory");
  }
  png_set_write_fn(png, &writer, png_mem_write, png_mem_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  *out = writer.data;
  *out_len = writer.size;
  return 0;
}

int cimg_encode_jpeg(const uint8_t *pixels, int width, int height, int channels, int quality, uint8_t **out, size_t *out_len,
                     char *err, size_t cap) {
  if (channels != 1 && channels != 3) return fail(err, cap, "JPEG: %d channels (need 1 or 3)", channels);
  struct jpeg_compress_struct cinfo;
  jpeg_err_ctx jerr;
  unsigned char *buffer = NULL;
  unsigned long size = 0;
  cinfo.err = jpeg_std_error(&jerr.pub);
  jerr.pub.error_exit = jpeg_on_error;
  jerr.err = err;
  jerr.cap = cap;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_compress(&cinfo);
    free(buffer);
    return -1;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = (JDIMENSION)width;
  cinfo.image_height = (JDIMENSION)height;
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * channels);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  *out = buffer;
  *out_len = size;
  return 0;
}
