"""Oracle for the noisy test sets: OpenCV applies the authors' degradations.

Usage: python degrade_oracle.py DIR
Writes DIR/in_<n>.png (inputs) and DIR/<case>_<n>.png (OpenCV's outputs) for case1, case2, blur:K,
computed with OpenCV's own code paths (Intel IPP off), and DIR/ipp_case2_<n>.png with IPP on: the IPP
bicubic resize differs from OpenCV's generic one by a grey level on some pixels.
"""
import sys

import cv2
import numpy as np

d = sys.argv[1]
rng = np.random.default_rng(12)
images = []
for n, (h, w) in enumerate(((96, 128), (77, 101))):
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 2 + yy) % 256, (yy * 3) % 256, (120 + 60 * np.sin(xx / 7.0)) % 256], -1).astype(np.float64)
    img += rng.normal(0, 25, img.shape)
    img[h // 3:h // 3 + 4, :] = 20  # a dark "crack"
    img = np.clip(img, 0, 255).astype(np.uint8)  # RGB
    cv2.imwrite(f"{d}/in_{n}.png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    images.append(img)


def case1(bgr):
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV).astype(np.int32)
    hsv[..., 2] = np.clip(hsv[..., 2] - 50, 0, 255)
    return cv2.GaussianBlur(cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR), (9, 9), 0)


def case2(bgr):
    h, w = bgr.shape[:2]
    x = cv2.GaussianBlur(bgr, (21, 21), 0)
    x = cv2.resize(x, (w // 2, h // 2), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(x, (w, h), interpolation=cv2.INTER_CUBIC)


for n, img in enumerate(images):
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    cv2.ipp.setUseIPP(True)
    cv2.imwrite(f"{d}/ipp_case2_{n}.png", case2(bgr))
    cv2.ipp.setUseIPP(False)
    cv2.imwrite(f"{d}/case1_{n}.png", case1(bgr))
    cv2.imwrite(f"{d}/case2_{n}.png", case2(bgr))
    for k in (1, 3, 5, 9, 13, 25):
        cv2.imwrite(f"{d}/blur{k}_{n}.png", cv2.GaussianBlur(bgr, (k, k), 0))
print("written")
