/// Activation checkpointing for the image encoder, as a pass over its blocks: the forward runs without
/// an autograd graph and keeps only each block's input; the backward then walks the blocks in reverse,
/// recomputing one block at a time from its saved input (with a graph) and back-propagating the incoming
/// gradient through it. Peak memory holds one block's activations instead of all of them (ViT-H: 32),
/// for the price of a second forward of the encoder. The delta's gradients come out those of an
/// ordinary backward, the same products in the same order within each block, up to rounding: the
/// graph-free forward may take a fused attention kernel where the recorded one cannot (float64 test: 1e-11).
public struct EncoderCheckpoints {
    /// The input of each block, then the last block's output (the neck's input); no graph attached.
    public let inputs: [Tensor]
    /// The embedding as a leaf that requires a gradient: the decoder's graph starts here.
    public let embedding: Tensor
}

extension ImageEncoderViT {
    /// Forward without a graph, keeping what `backward(from:gradient:recompute:)` needs.
    /// Run it inside whatever autocast the step uses.
    public func forwardCheckpointed(_ x: Tensor) throws -> EncoderCheckpoints {
        try Torch.withNoGrad {
            var inputs: [Tensor] = []
            var h = try patchEmbed(x) + posEmbed.tensor
            for block in blocks.items {
                inputs.append(h)
                h = try block(h)
            }
            inputs.append(h)
            let embedding = try neck(h.permute([0, 3, 1, 2]))
            return EncoderCheckpoints(inputs: inputs, embedding: try embedding.detach().requiresGrad(true))
        }
    }

    /// Back-propagates d(loss)/d(embedding) — the checkpoints' embedding leaf's gradient after the
    /// decoder's backward — through the encoder. `recompute` wraps each recomputed forward (autocast:
    /// the recomputation must match the first forward; the backward itself runs outside it).
    public func backward(from checkpoints: EncoderCheckpoints, recompute: (() throws -> Tensor) throws -> Tensor = { try $0() }) throws {
        guard var gradient = try checkpoints.embedding.grad else {
            throw TorchError.invalidArgument("activation checkpointing: the embedding has no gradient (run the decoder's backward first)")
        }
        // The walk goes down to the first block with something to train (every block with a delta; none
        // when only the head trains, and then nothing below the embedding is recomputed at all).
        let first = blocks.items.firstIndex { !$0.trainableParameters().isEmpty }
        guard first != nil || !neck.trainableParameters().isEmpty else { return }
        // The neck is frozen: only the gradient with respect to its input is needed.
        var leaf = try checkpoints.inputs[blocks.items.count].detach().requiresGrad(first != nil)
        let inputToNeck = leaf
        var output = try recompute { try self.neck(inputToNeck.permute([0, 3, 1, 2])) }
        try output.backward(gradient: gradient.to(dtype: output.dtype))
        guard let first else { return }
        gradient = try leaf.grad!
        for i in (first..<blocks.items.count).reversed() {
            // The first block's input needs no gradient (nothing below it trains).
            leaf = try checkpoints.inputs[i].detach().requiresGrad(i > first)
            let input = leaf
            output = try recompute { try self.blocks.items[i](input) }
            try output.backward(gradient: gradient.to(dtype: output.dtype))
            if i > first { gradient = try leaf.grad! }
        }
    }
}
