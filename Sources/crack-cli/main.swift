import CrackSAM
let sd = try PyTorchCheckpoint.loadStateDict(at: "/tmp/sd.pth")
for (k, v) in sd { print(k, v, try v.floats()) }
try PyTorchCheckpoint.save(sd, to: "/tmp/sd2.pth")
try SafeTensors.save(sd, metadata: ["a": "b"], to: "/tmp/sd2.safetensors")
let st = try SafeTensors.load(at: "/tmp/sd2.safetensors")
print(st.metadata, st.tensors.keys)
