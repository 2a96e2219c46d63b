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

// Nothing references libtorch_cuda's symbols, so an --as-needed linker would drop it and CUDA would
// read as unavailable; keep it with --no-as-needed when this libtorch has it (the shim also dlopens it).
var torchLinkFlags = ["-L" + libDir, "-Xlinker", "-rpath", "-Xlinker", libDir, "-ltorch_cpu", "-lc10"]
if hasCUDA {
    torchLinkFlags += ["-Xlinker", "--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Xlinker", "--as-needed"]
}

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
                ]),
                // Declarations of the Gloo names ProcessGroupGloo.hpp mentions (see shim_dist.cpp).
                .headerSearchPath("gloo-decls"),
            ],
            linkerSettings: [.unsafeFlags(torchLinkFlags), .linkedLibrary("dl")]
        ),
        // PNG/JPEG through the Debian packages libpng-dev and libjpeg-dev (scripts/setup installs them).
        .target(
            name: "CImageIO",
            cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("png"), .linkedLibrary("jpeg")]
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
