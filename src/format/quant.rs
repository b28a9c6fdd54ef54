//! Weight storage formats. One enum; the GPU GEMV/GEMM/embedding kernels select a block decoder
//! (`shaders/formats/<name>.wgsl`) from it, so a new format is a new decoder, not a new kernel.

/// How a tensor's elements are stored (in the file and, after upload, on the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantFormat {
    F32,
    F16,
    BF16,
    Q4_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl QuantFormat {
    /// Elements per block (1 for plain floats).
    pub const fn block_elems(self) -> usize {
        match self {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16 => 1,
            QuantFormat::Q4_0 | QuantFormat::Q8_0 => 32,
            QuantFormat::Q4K | QuantFormat::Q5K | QuantFormat::Q6K => 256,
        }
    }
    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantFormat::F32 => 4,
            QuantFormat::F16 | QuantFormat::BF16 => 2,
            QuantFormat::Q4_0 => 18,
            QuantFormat::Q8_0 => 34,
            QuantFormat::Q4K => 144,
            QuantFormat::Q5K => 176,
            QuantFormat::Q6K => 210,
        }
    }
    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if !n.is_multiple_of(self.block_elems()) {
            return None;
        }
        (n / self.block_elems()).checked_mul(self.block_bytes())
    }
    /// ggml tensor type id (GGUF tensor info), per ggml's `ggml_type`.
    pub fn from_ggml_type(id: u32) -> Option<QuantFormat> {
        Some(match id {
            0 => QuantFormat::F32,
            1 => QuantFormat::F16,
            2 => QuantFormat::Q4_0,
            8 => QuantFormat::Q8_0,
            12 => QuantFormat::Q4K,
            13 => QuantFormat::Q5K,
            14 => QuantFormat::Q6K,
            30 => QuantFormat::BF16,
            _ => return None,
        })
    }
    pub fn ggml_type(self) -> u32 {
        match self {
            QuantFormat::F32 => 0,
            QuantFormat::F16 => 1,
            QuantFormat::Q4_0 => 2,
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q4K => 12,
            QuantFormat::Q5K => 13,
            QuantFormat::Q6K => 14,
            QuantFormat::BF16 => 30,
        }
    }
    /// Name as ggml prints it (`f32`, `q4_K`...).
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::F32 => "f32",
            QuantFormat::F16 => "f16",
            QuantFormat::BF16 => "bf16",
            QuantFormat::Q4_0 => "q4_0",
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4K => "q4_K",
            QuantFormat::Q5K => "q5_K",
            QuantFormat::Q6K => "q6_K",
        }
    }
    /// Whether the GPU kernels of this build can run this format.
    pub fn gpu_supported(self) -> bool {
        matches!(
            self,
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::BF16
        )
    }

    /// Dequantize `bytes` (a whole number of rows/blocks) to f32 on the CPU. Used by the CPU
    /// reference and by tests; never on the inference path.
    pub fn dequantize(self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), String> {
        let bb = self.block_bytes();
        if !bytes.len().is_multiple_of(bb) {
            return Err(format!(
                "{} bytes is not a whole number of {} blocks",
                bytes.len(),
                self.name()
            ));
        }
        match self {
            QuantFormat::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            QuantFormat::F16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            QuantFormat::BF16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
            ),
            other => {
                return Err(format!(
                    "CPU dequantization of {} is not implemented yet",
                    other.name()
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
