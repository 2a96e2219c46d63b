import CrackSAM
let a = try Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
let b = try a.matmul(a)
print(try b.floats(), Torch.version, CUDA.isAvailable, Torch.threads, Tensor.liveCount)
do { _ = try a.matmul(Tensor.zeros([3, 3])) } catch { print("caught:", error) }
let x = try Tensor.randn([3]).requiresGrad(true)
let y = try (x * x).sum()
try y.backward()
print(try x.grad!.floats(), try (x * 2.0).floats())
