import OrderedCollections

/// A tensor slot in the module tree: a learnable parameter or a buffer. A class, so the tree, the
/// optimizer and checkpoint loading all see the same slot when its tensor is replaced.
public final class Parameter {
    public internal(set) var tensor: Tensor {
        didSet { lowPrecision = nil }  // a replaced tensor's cast must not outlive it (a move to another device)
    }
    /// Buffers (e.g. the prompt encoder's Gaussian matrix) are saved in checkpoints but never trained.
    public let isBuffer: Bool

    public init(_ tensor: Tensor, isBuffer: Bool = false) throws {
        self.isBuffer = isBuffer
        self.tensor = isBuffer ? tensor : try tensor.requiresGrad(true)
    }

    public var isTrainable: Bool { !isBuffer && tensor.requiresGrad }
    public var count: Int { tensor.count }
    public var shape: [Int] { tensor.shape }

    /// The value a product should use: under autocast on its device, a frozen float32 tensor cast to
    /// autocast's dtype, the cast kept from call to call; otherwise the tensor itself. Autocast's own
    /// cache keeps only casts of tensors that need a gradient, and only within one autocast region, so
    /// a frozen encoder's weights would be cast again at every forward (ViT-H: 630M values per training
    /// step, twice with activation checkpointing). The copy is made again when the tensor is replaced
    /// or changed in place (its version counter), or inference mode is entered or left (a tensor made
    /// in inference mode cannot be saved for a backward).
    public func autocastValue() throws -> Tensor {
        guard !tensor.requiresGrad, tensor.dtype == .float32, let low = Torch.autocastDType(device: tensor.device) else {
            return tensor
        }
        // A tensor made in inference mode has no version counter: it is left to autocast, uncached.
        guard let stamp = DerivedStamp(of: tensor, dtype: low) else { return tensor }
        if let copy = lowPrecision, copy.stamp == stamp { return copy.tensor }
        let cast = try tensor.to(dtype: low)
        lowPrecision = (stamp, cast)
        return cast
    }
    private var lowPrecision: (stamp: DerivedStamp, tensor: Tensor)?

    func setTrainable(_ flag: Bool) throws {
        guard !isBuffer else { return }
        try tensor.requiresGrad(flag)
    }

    /// Replaces the value (from a checkpoint), keeping this slot's dtype, device and trainability.
    func assign(_ value: Tensor) throws {
        var t = try value.detach()
        if t.dtype != tensor.dtype || t.device != tensor.device { t = try t.to(device: tensor.device, dtype: tensor.dtype) }
        // Views into a shared checkpoint storage become tensors of their own, so in-place updates of one
        // parameter can never reach another.
        if !t.isContiguous || t.storageOffset != 0 { t = try t.contiguous().clone() }
        if !isBuffer { try t.requiresGrad(tensor.requiresGrad) }
        tensor = t
    }
}

/// A layer that maps one tensor to one tensor (what `Sequential` chains).
public protocol UnaryLayer: Module {
    func forward(_ x: Tensor) throws -> Tensor
}

extension UnaryLayer {
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try forward(x) }
}

/// A node of the model tree. Names of parameters, buffers and children are PyTorch's, so the dotted
/// paths (`image_encoder.blocks.7.attn.rel_pos_h`) are the state_dict keys and official checkpoints
/// load by name. Freezing, PEFT injection and loading are operations on this tree.
open class Module {
    public private(set) var parameters: OrderedDictionary<String, Parameter> = [:]
    public private(set) var children: OrderedDictionary<String, Module> = [:]

    public init() {}

    public func register(_ name: String, _ parameter: Parameter) {
        parameters[name] = parameter
    }

    /// Adds or replaces a child (replacing is how PEFT wraps a layer in place).
    public func register(child name: String, _ module: Module) {
        children[name] = module
    }

    /// Takes over another module's parameters and children under the same names, so a wrapper can
    /// stand where the wrapped module stood without changing any state_dict key (PEFT wrappers do this:
    /// `blocks.0.attn.qkv.weight` stays where official checkpoints put it).
    public func adopt(_ other: Module) {
        for (name, p) in other.parameters { register(name, p) }
        for (name, c) in other.children { register(child: name, c) }
    }

    // MARK: - Walking the tree (PyTorch order: own slots first, then children, depth first)

    public func namedSlots(prefix: String = "") -> [(key: String, parameter: Parameter)] {
        var out: [(key: String, parameter: Parameter)] = []
        collect(prefix: prefix, into: &out)
        return out
    }

    private func collect(prefix: String, into out: inout [(key: String, parameter: Parameter)]) {
        // state_dict lists parameters before buffers within a module.
        for (name, p) in parameters where !p.isBuffer { out.append((prefix + name, p)) }
        for (name, p) in parameters where p.isBuffer { out.append((prefix + name, p)) }
        for (name, child) in children { child.collect(prefix: prefix + name + ".", into: &out) }
    }

    /// Learnable parameters only (no buffers), as `named_parameters()`.
    public func namedParameters() -> [(key: String, parameter: Parameter)] {
        namedSlots().filter { !$0.parameter.isBuffer }
    }

    public func trainableParameters() -> [(key: String, parameter: Parameter)] {
        namedParameters().filter { $0.parameter.isTrainable }
    }

    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.parameter.count } }
    public var trainableParameterCount: Int { trainableParameters().reduce(0) { $0 + $1.parameter.count } }

    /// The sub-module at a dotted path ("image_encoder.blocks.3"), or nil.
    public func module(at path: String) -> Module? {
        var node: Module = self
        for part in path.split(separator: ".") where !part.isEmpty {
            guard let next = node.children[String(part)] else { return nil }
            node = next
        }
        return node
    }

    /// Every module in the tree with its path ("" for self).
    public func namedModules(prefix: String = "") -> [(path: String, module: Module)] {
        var out: [(path: String, module: Module)] = [(prefix, self)]
        for (name, child) in children {
            out += child.namedModules(prefix: prefix.isEmpty ? name : prefix + "." + name)
        }
        return out
    }

    // MARK: - Freezing

    /// Stops gradients for every parameter below this module.
    public func freeze() throws {
        for (_, p) in namedParameters() { try p.setTrainable(false) }
    }

    public func unfreeze() throws {
        for (_, p) in namedParameters() { try p.setTrainable(true) }
    }

    // MARK: - State dicts

    public func stateDict() -> StateDict {
        var out = StateDict()
        for (k, p) in namedSlots() { out[k] = p.tensor }
        return out
    }

    /// Loads tensors by key. Missing, unexpected and mis-shaped keys are collected and thrown together
    /// (`strict`), or returned as the report (non-strict) with everything that did match loaded.
    @discardableResult
    public func loadStateDict(_ stateDict: StateDict, strict: Bool = true, source: String = "state dict") throws -> LoadReport {
        var report = LoadReport()
        let slots = namedSlots()
        let known = Set(slots.map(\.key))
        report.unexpected = stateDict.keys.filter { !known.contains($0) }
        for (key, slot) in slots {
            guard let value = stateDict[key] else { report.missing.append(key); continue }
            if value.shape != slot.shape {
                report.mismatched.append(.init(key: key, expected: slot.shape, actual: value.shape))
            }
        }
        if strict && !report.isClean { throw TorchError.stateDictMismatch(source: source, report: report) }
        try stateDict.filter { known.contains($0.key) }.requireFinite(source: source)
        let mismatched = Set(report.mismatched.map(\.key))
        try Torch.withNoGrad {
            for (key, slot) in slots where !mismatched.contains(key) {
                if let value = stateDict[key] { try slot.assign(value) }
            }
        }
        return report
    }

    /// Moves every parameter and buffer (e.g. to CUDA), keeping trainability.
    public func move(to device: Device, dtype: DType? = nil) throws {
        try Torch.withNoGrad {
            for (_, p) in namedSlots() {
                // Like PyTorch's `.to(dtype)`: floating-point parameters and buffers change dtype, integer ones do not.
                let convert = dtype != nil && p.tensor.dtype.isFloatingPoint
                let t = try p.tensor.detach().to(device: device, dtype: convert ? dtype : nil)
                if !p.isBuffer { try t.requiresGrad(p.tensor.requiresGrad) }
                p.tensor = t
            }
        }
    }
}

/// What loading a state dict found, key by key.
public struct LoadReport: Equatable, CustomStringConvertible, Sendable {
    public struct Mismatch: Equatable, Sendable {
        public var key: String
        public var expected: [Int]
        public var actual: [Int]

        public init(key: String, expected: [Int], actual: [Int]) {
            self.key = key
            self.expected = expected
            self.actual = actual
        }
    }

    public var missing: [String] = []
    public var unexpected: [String] = []
    public var mismatched: [Mismatch] = []

    public var isClean: Bool { missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty }

    public var description: String {
        var lines: [String] = []
        func list(_ keys: [String]) -> String {
            keys.count <= 12 ? keys.joined(separator: ", ") : keys.prefix(12).joined(separator: ", ") + ", … (\(keys.count) in all)"
        }
        if !missing.isEmpty { lines.append("missing keys: " + list(missing)) }
        if !unexpected.isEmpty { lines.append("unexpected keys: " + list(unexpected)) }
        for m in mismatched.prefix(12) { lines.append("\(m.key): model has shape \(m.expected), file has \(m.actual)") }
        if mismatched.count > 12 { lines.append("… \(mismatched.count) mis-shaped keys in all") }
        return lines.isEmpty ? "all keys matched" : lines.joined(separator: "\n")
    }
}

/// Where new parameters are allocated. `.meta` builds a model without memory (to count parameters of
/// ViT-H without 2.5 GB); scoped like `with torch.device(...)`, and like it per thread (a task-local
/// value, bound to the thread outside tasks): two threads building models cannot leave each other's
/// parameters on the wrong device.
public enum ParameterInit {
    @TaskLocal static var device: Device = .cpu

    public static func withDevice<R>(_ device: Device, _ body: () throws -> R) rethrows -> R {
        try $device.withValue(device, operation: body)
    }

    /// PyTorch's default for Linear/Conv weights: kaiming_uniform(a=√5) = U(±1/√fan_in).
    static func kaimingUniform(_ shape: [Int], fanIn: Int) throws -> Tensor {
        let bound = 1.0 / Double(max(fanIn, 1)).squareRoot()
        return try Tensor.uniform(shape, low: -bound, high: bound, device: device)
    }

    static func zeros(_ shape: [Int]) throws -> Tensor { try Tensor.zeros(shape, device: device) }
    static func ones(_ shape: [Int]) throws -> Tensor { try Tensor.ones(shape, device: device) }
    static func normal(_ shape: [Int], std: Double = 1) throws -> Tensor { try Tensor.normal(shape, std: std, device: device) }
}

/// What a value kept from a frozen tensor (its autocast cast, a table derived from it) was made from:
/// the tensor itself, its version counter (moved by every in-place change), autocast's dtype, and
/// whether inference mode was on (a tensor made there cannot be saved for a backward). The kept value
/// stands while the stamp of now equals its own.
struct DerivedStamp: Equatable {
    let source: Tensor
    let version: Int
    let dtype: DType?
    let inferenceMode: Bool

    /// nil for a tensor with no version counter (one made in inference mode): nothing can be kept for it.
    init?(of source: Tensor, dtype: DType?) {
        guard let version = try? source.version() else { return nil }
        self.source = source
        self.version = version
        self.dtype = dtype
        inferenceMode = Torch.isInferenceMode
    }

    static func == (a: Self, b: Self) -> Bool {
        a.source === b.source && a.version == b.version && a.dtype == b.dtype && a.inferenceMode == b.inferenceMode
    }
}
