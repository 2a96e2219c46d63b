/*
 * cimageio.h — PNG and JPEG decoding/encoding through libpng and libjpeg.
 *
 * libjpeg reports fatal errors by calling an error_exit hook that must not return; handling that needs
 * setjmp/longjmp, which Swift cannot do, hence this small C layer. Every function returns 0 on success or
 * -1 with a message in `err` (never exits, never aborts).
 */
#ifndef CIMAGEIO_H
#define CIMAGEIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int width;
  int height;
  /* 1 (grey) or 3 (RGB). Palette images become RGB, alpha is dropped. */
  int channels;
  /* width * height * channels bytes, row-major, interleaved; release with cimg_free. */
  uint8_t *pixels;
  /* The EXIF orientation (1...8) the pixels were turned upright from; 1 when the file has none. */
  int orientation;
} cimg_image;

enum { CIMG_UNKNOWN = 0, CIMG_PNG = 1, CIMG_JPEG = 2, CIMG_BMP = 3 };

/* Recognises PNG, JPEG and BMP by their first bytes. */
int cimg_sniff(const uint8_t *bytes, size_t n);

/* Decodes a PNG or JPEG held in memory to 8 bits per sample, upright: an EXIF orientation (JPEG APP1,
   PNG eXIf) is applied, as OpenCV's imread does. Also uncompressed BMP (1/4/8-bit palette, 24/32-bit).
   16-bit PNGs keep each sample's high byte, as imread's 8-bit image does; one whose high bytes are all
   zero but not its low bytes (8-bit values in a 16-bit file, all black that way) is refused. CMYK/YCCK
   JPEGs become RGB as imread makes them. Compressed or 16-bit BMPs are refused by name. */
int cimg_decode(const uint8_t *bytes, size_t n, cimg_image *out, char *err, size_t err_cap);
void cimg_free(cimg_image *img);

/* Encodes 8-bit grey (1) or RGB (3) pixels as PNG into a malloc'd buffer (release with free()). */
int cimg_encode_png(const uint8_t *pixels, int width, int height, int channels, uint8_t **out, size_t *out_len, char *err,
                    size_t err_cap);
/* Encodes 8-bit grey or RGB pixels as JPEG (quality 1…100) into a malloc'd buffer. */
int cimg_encode_jpeg(const uint8_t *pixels, int width, int height, int channels, int quality, uint8_t **out, size_t *out_len,
                     char *err, size_t err_cap);

#ifdef __cplusplus
}
#endif
#endif
