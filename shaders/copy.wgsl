// Plain copy dst[i] = src[i] over array<vec4<u32>>: the device's copy bandwidth, the ceiling the
// memory-bound kernels are compared against (benches/kernels.rs).
//   src, dst: [N] vec4<u32>.
// Grid-stride: the grid is capped (65535 workgroups), each lane walks i, i + stride, ...

override N: u32;
override WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * WG;
    for (var i = gid.x; i < N; i += stride) {
        dst[i] = src[i];
    }
}
