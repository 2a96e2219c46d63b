// swift-tools-version:6.0
// CrackSAM in Swift: SAM fine-tuning (adapters / LoRA) for crack segmentation on libtorch.
import Foundation
import PackageDescription

// libtorch comes from LIBTORCH (a torch install holding include/ and lib/, e.g. a CUDA torch on a GPU
// workstation) or from the CPU wheel that scripts/setup installs and links at .venv/libtorch.
let packageDir = Context.packageDirectory
let libtorch: String = {
    if let env = Context.environment["LIBTORCH"], !env.isEmpty { return env }
    return packageDir + "/.venv/libtorch"
}()
let libDir = libtorch + "/lib"
// CRACKSAM_NO_CUDA_LINK=1 skips the link-time dependency (a build machine without CUDA's own libraries,
// as scripts/gpu-build does); the shim then loads libtorch_cuda at run time instead.
let hasCUDA = FileManager.default.fileExists(atPath: libDir + "/libtorch_cuda.so")
    && Context.environment["CRACKSAM_NO_CUDA_LINK"] == nil

// NCCL: libtorch's ProcessGroupNCCL header needs nccl.h and the CUDA runtime headers (from the
// nvidia-nccl and nvidia-cuda-runtime wheels; scripts/gpu-build fetches them). Given as
// CRACKSAM_NCCL_INCLUDE=dir1:dir2, the shim compiles NCCL in and links libtorch_cuda, whose own CUDA
// libraries are resolved on the GPU machine at run time (hence --allow-shlib-undefined here).
let ncclIncludes = (Context.environment["CRACKSAM_NCCL_INCLUDE"] ?? "").split(separator: ":").map(String.init)
// The same CUDA runtime headers compile in CUDA graphs (at::cuda::CUDAGraph, shim_cuda_graph.cpp).
let ncclFlags: [String] = ncclIncludes.isEmpty ? []
    : ["-DCRACKSAM_NCCL=1", "-DCRACKSAM_CUDA_HEADERS=1"] + ncclIncludes.flatMap { ["-I", $0] }

// Nothing references libtorch_cuda's symbols, so an --as-needed linker would drop it and CUDA would
// read as unavailable; keep it with --no-as-needed when this libtorch has it (the shim also dlopens it).
var torchLinkFlags = ["-L" + libDir, "-Xlinker", "-rpath", "-Xlinker", libDir, "-ltorch_cpu", "-lc10"]
if hasCUDA || !ncclIncludes.isEmpty {
    torchLinkFlags += ["-Xlinker", "--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Xlinker", "--as-needed"]
}
if !ncclIncludes.isEmpty && !hasCUDA {
    torchLinkFlags += ["-Xlinker", "--allow-shlib-undefined"]
}

// A bundle for another machine (scripts/gpu-build) links libpng and libjpeg statically, since that
// machine may not have them; zlib (libpng's dependency) is everywhere.
let imageLinkSettings: [LinkerSetting] = Context.environment["CRACKSAM_STATIC_IMAGE_LIBS"] == "1"
    ? [.unsafeFlags(["-Xlinker", "-l:libpng16.a", "-Xlinker", "-l:libjpeg.a"]), .linkedLibrary("z")]
    : [.linkedLibrary("png"), .linkedLibrary("jpeg")]

let package = Package(
    name: "CrackSAM",
    products: [
        .library(name: "CrackSAM", targets: ["CrackSAM"]),
        .executable(name: "crack-cli", targets: ["crack-cli"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        .target(
            name: "CTorchShim",
            cxxSettings: [
                .unsafeFlags([
                    "-I", libtorch + "/include",
                    "-I", libtorch + "/include/torch/csrc/api/include",
                    "-D_GLIBCXX_USE_CXX11_ABI=1", "-O2", "-Wno-deprecated-declarations",
                ] + ncclFlags),
                // Declarations of the Gloo names ProcessGroupGloo.hpp mentions (see shim_dist.cpp).
                .headerSearchPath("gloo-decls"),
            ],
            linkerSettings: [.unsafeFlags(torchLinkFlags), .linkedLibrary("dl")]
        ),
        // PNG/JPEG through the Debian packages libpng-dev and libjpeg-dev (scripts/setup installs them).
        .target(
            name: "CImageIO",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: imageLinkSettings
        ),
        .target(
            name: "CrackSAM",
            dependencies: [
                "CTorchShim",
                "CImageIO",
                .product(name: "OrderedCollections", package: "swift-collections"),
            ]
        ),
        .executableTarget(
            name: "crack-cli",
            dependencies: [
                "CrackSAM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "CrackSAMTests", dependencies: ["CrackSAM"]),
    ],
    swiftLanguageModes: [.v5],
    cxxLanguageStandard: .cxx20
)
