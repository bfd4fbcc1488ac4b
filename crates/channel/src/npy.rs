//! `.npy` IO of channels and precoders as `complex128`, so that channels exported from DeepMIMO,
//! QuaDRiGa or Sionna (`numpy.save("h.npy", h.astype(np.complex128))`) can replace the synthetic
//! models, and designed precoders can be inspected in Python.
//!
//! Layouts (C or Fortran order, either endianness on reading; little-endian C order on writing):
//!
//! - channels: `[S, K, N_rx, M]` (samples, users, receive antennas, transmit antennas); on reading,
//!   `[S, K, M]` is also accepted and treated as `N_rx = 1`;
//! - precoders: `[S, M, K]` (samples, transmit antennas, streams).
//!
//! Readers never panic on bad files: a missing or unreadable file is [`ChannelError::Io`]; anything
//! wrong with the content (not `.npy`, dtype other than `complex128`, wrong number of dimensions, a
//! zero-size dimension, truncated data, non-finite entries) is [`ChannelError::Format`] naming the
//! file and the problem. The whole file is read before the array is built, so a corrupt header
//! cannot trigger an allocation larger than the file. Writers go through `<path>.tmp` and a rename,
//! so a reader never sees a half-written file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use beamlab_core::Channel;
use ndarray::{Array2, Array4, ArrayD, Axis, Dimension, s};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use num_complex::Complex64 as c64;

use crate::ChannelError;

/// Bytes per `complex128` entry.
const ENTRY_BYTES: usize = 16;

fn format_error(path: &Path, message: impl Into<String>) -> ChannelError {
    ChannelError::Format { path: path.to_path_buf(), message: message.into() }
}

fn io_error(path: &Path, source: std::io::Error) -> ChannelError {
    ChannelError::Io { path: path.to_path_buf(), source }
}

/// Reads a finite, non-empty `complex128` array whose number of dimensions is in `ndims`.
fn read_complex(path: &Path, ndims: &[usize], layout: &str) -> Result<ArrayD<c64>, ChannelError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let mut data: &[u8] = &bytes;
    let header =
        Header::from_reader(&mut data).map_err(|e| format_error(path, format!("not a valid .npy file ({e})")))?;
    let descr = header.type_descriptor.to_string();
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    if descr != "<c16" && descr != ">c16" {
        return Err(format_error(path, format!("dtype must be complex128 ('<c16'), found '{descr}'")));
    }
    if !ndims.contains(&header.shape.len()) {
        return Err(format_error(
            path,
            format!("expected a {layout} array, found {} dimensions {:?}", header.shape.len(), header.shape),
        ));
    }
    if header.shape.contains(&0) {
        return Err(format_error(path, format!("shape {:?} has a zero-size dimension", header.shape)));
    }
    let needed = header.shape.iter().try_fold(ENTRY_BYTES, |acc, &d| acc.checked_mul(d));
    if needed != Some(data.len()) {
        return Err(format_error(
            path,
            format!("shape {:?} does not match the {} data bytes in the file", header.shape, data.len()),
        ));
    }
    let array = ArrayD::<c64>::read_npy(&bytes[..]).map_err(|e| format_error(path, e.to_string()))?;
    if let Some((index, _)) = array.indexed_iter().find(|(_, z)| !(z.re.is_finite() && z.im.is_finite())) {
        return Err(format_error(path, format!("non-finite entry at index {:?}", index.slice())));
    }
    Ok(array)
}

/// Writes `array` to `<path>.tmp`, then renames it to `path`.
fn write_atomic<T: WriteNpyExt + ?Sized>(path: &Path, array: &T) -> Result<(), ChannelError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        let mut writer = BufWriter::new(file);
        array.write_npy(&mut writer).map_err(|e| match e {
            ndarray_npy::WriteNpyError::Io(source) => io_error(&tmp, source),
            other => io_error(&tmp, std::io::Error::other(other.to_string())),
        })?;
        writer.flush().map_err(|e| io_error(&tmp, e))?;
        let file = writer.into_inner().map_err(|e| io_error(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    })();
    if result.is_err() {
        // Best effort: a failed write leaves no temporary file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes channel samples as one `complex128` array `[S, K, N_rx, M]`.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] when `channels` is empty, or when the samples (or the users
/// within a sample) do not share `K`, `N_rx` and `M`; [`ChannelError::Io`] when the file cannot be
/// written.
///
/// # Example
/// ```
/// use beamlab_channel::{rayleigh, read_channels_npy, write_channels_npy};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let samples = vec![rayleigh(2, 1, 4, &mut rng)?, rayleigh(2, 1, 4, &mut rng)?];
/// let path = std::env::temp_dir().join(format!("beamlab-doc-{}.npy", std::process::id()));
/// write_channels_npy(&path, &samples)?;
/// assert_eq!(read_channels_npy(&path)?, samples);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
pub fn write_channels_npy(path: &Path, channels: &[Channel]) -> Result<(), ChannelError> {
    let first = channels.first().ok_or_else(|| ChannelError::InvalidParameter("no channel samples to write".into()))?;
    let (n_users, n_rx, n_tx) = (first.n_users(), first.n_rx()[0], first.n_tx());
    let mut out = Array4::<c64>::zeros((channels.len(), n_users, n_rx, n_tx));
    for (s, channel) in channels.iter().enumerate() {
        if channel.n_users() != n_users || channel.n_tx() != n_tx {
            return Err(ChannelError::InvalidParameter(format!(
                "sample {s} has {} users and {} transmit antennas, sample 0 has {n_users} and {n_tx}",
                channel.n_users(),
                channel.n_tx()
            )));
        }
        for (k, block) in channel.blocks().iter().enumerate() {
            if block.nrows() != n_rx {
                return Err(ChannelError::InvalidParameter(format!(
                    "sample {s}, user {k} has {} receive antennas, expected {n_rx} for every user",
                    block.nrows()
                )));
            }
            out.slice_mut(s![s, k, .., ..]).assign(block);
        }
    }
    write_atomic(path, &out)
}

/// Reads channel samples from a `complex128` array `[S, K, N_rx, M]`, or `[S, K, M]` for
/// single-antenna users.
///
/// # Errors
/// [`ChannelError::Io`] when the file cannot be read; [`ChannelError::Format`] when it is not a
/// `.npy` file, not `complex128`, not 3- or 4-dimensional, has a zero-size dimension, is truncated
/// or holds non-finite entries.
pub fn read_channels_npy(path: &Path) -> Result<Vec<Channel>, ChannelError> {
    let mut array = read_complex(path, &[3, 4], "[S, K, N_rx, M] or [S, K, M] channel")?;
    if array.ndim() == 3 {
        array.insert_axis_inplace(Axis(2));
    }
    array
        .outer_iter()
        .map(|sample| {
            let sample = sample.into_dimensionality::<ndarray::Ix3>().map_err(|e| format_error(path, e.to_string()))?;
            Ok(Channel::from_array3(&sample.to_owned())?)
        })
        .collect()
}

/// Writes precoders `W_s: [M × K]` as one `complex128` array `[S, M, K]`.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] when `precoders` is empty, a precoder has a zero dimension or
/// non-finite entries, or the shapes differ; [`ChannelError::Io`] when the file cannot be written.
pub fn write_precoders_npy(path: &Path, precoders: &[Array2<c64>]) -> Result<(), ChannelError> {
    let first = precoders.first().ok_or_else(|| ChannelError::InvalidParameter("no precoders to write".into()))?;
    let (n_tx, n_streams) = first.dim();
    if n_tx == 0 || n_streams == 0 {
        return Err(ChannelError::InvalidParameter(format!("empty precoder of shape {:?}", first.dim())));
    }
    let mut out = ndarray::Array3::<c64>::zeros((precoders.len(), n_tx, n_streams));
    for (s, w) in precoders.iter().enumerate() {
        if w.dim() != (n_tx, n_streams) {
            return Err(ChannelError::InvalidParameter(format!(
                "precoder {s} has shape {:?}, precoder 0 has {:?}",
                w.dim(),
                (n_tx, n_streams)
            )));
        }
        if w.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            return Err(ChannelError::InvalidParameter(format!("precoder {s} has non-finite entries")));
        }
        out.index_axis_mut(Axis(0), s).assign(w);
    }
    write_atomic(path, &out)
}

/// Reads precoders `W_s: [M × K]` from a `complex128` array `[S, M, K]`.
///
/// # Errors
/// As [`read_channels_npy`], with exactly 3 dimensions required.
pub fn read_precoders_npy(path: &Path) -> Result<Vec<Array2<c64>>, ChannelError> {
    let array = read_complex(path, &[3], "[S, M, K] precoder")?;
    Ok(array
        .outer_iter()
        .map(|w| {
            let (m, k) = (w.shape()[0], w.shape()[1]);
            Array2::from_shape_fn((m, k), |(i, j)| w[[i, j]])
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rayleigh;
    use ndarray::{Array3, ShapeBuilder, array};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("beamlab-channel-{}-{name}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn is_format(r: &Result<impl std::fmt::Debug, ChannelError>, path: &Path, needle: &str) -> bool {
        match r {
            Err(e @ ChannelError::Format { path: p, message }) => {
                p == path && message.contains(needle) && e.to_string().contains(&*path.to_string_lossy())
            }
            _ => false,
        }
    }

    #[test]
    fn channels_round_trip_exactly() {
        let dir = TempDir::new("round-trip");
        let path = dir.file("h.npy");
        let mut rng = ChaCha8Rng::seed_from_u64(41);
        let samples: Vec<_> = (0..3).map(|_| rayleigh(4, 2, 8, &mut rng).unwrap()).collect();
        write_channels_npy(&path, &samples).unwrap();
        assert!(!dir.file("h.npy.tmp").exists());
        let raw = ArrayD::<c64>::read_npy(File::open(&path).unwrap()).unwrap();
        assert_eq!(raw.shape(), &[3, 4, 2, 8]);
        assert_eq!(read_channels_npy(&path).unwrap(), samples);
        // Overwriting an existing file works too.
        write_channels_npy(&path, &samples[..1]).unwrap();
        assert_eq!(read_channels_npy(&path).unwrap(), samples[..1].to_vec());
    }

    #[test]
    fn three_dimensional_channels_are_single_antenna_users() {
        let dir = TempDir::new("three-d");
        let path = dir.file("h3.npy");
        let raw = Array3::from_shape_fn((2, 3, 5), |(s, k, m)| c64::new(s as f64, (10 * k + m) as f64));
        raw.write_npy(File::create(&path).unwrap()).unwrap();
        let samples = read_channels_npy(&path).unwrap();
        assert_eq!(samples.len(), 2);
        for (s, h) in samples.iter().enumerate() {
            assert_eq!(h.n_rx(), vec![1; 3]);
            assert_eq!(h.n_tx(), 5);
            for (k, block) in h.blocks().iter().enumerate() {
                assert_eq!(block.row(0), raw.slice(s![s, k, ..]));
            }
        }
    }

    #[test]
    fn fortran_order_files_are_read_correctly() {
        let dir = TempDir::new("fortran");
        let path = dir.file("hf.npy");
        let c_order =
            Array4::from_shape_fn((2, 2, 1, 3), |(s, k, n, m)| c64::new((s * 100 + k * 10 + n + m) as f64, 1.0));
        // Same logical array, Fortran memory layout.
        let mut f_order = Array4::zeros(c_order.raw_dim().f());
        f_order.assign(&c_order);
        f_order.write_npy(File::create(&path).unwrap()).unwrap();
        let samples = read_channels_npy(&path).unwrap();
        for (s, h) in samples.iter().enumerate() {
            assert_eq!(h.to_array3().unwrap(), c_order.index_axis(Axis(0), s));
        }
    }

    #[test]
    fn precoders_round_trip_exactly() {
        let dir = TempDir::new("precoders");
        let path = dir.file("w.npy");
        let ws = vec![
            array![[c64::new(1.0, -2.0), c64::new(0.5, 0.0)], [c64::new(0.0, 3.0), c64::new(-1.0, 1e-300)]],
            array![[c64::new(7.0, 0.0), c64::new(0.0, 0.0)], [c64::new(1e10, -1e-10), c64::new(2.0, 2.0)]],
        ];
        write_precoders_npy(&path, &ws).unwrap();
        assert_eq!(read_precoders_npy(&path).unwrap(), ws);
    }

    #[test]
    fn inconsistent_inputs_are_rejected_on_writing() {
        let dir = TempDir::new("write-invalid");
        let path = dir.file("bad.npy");
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let invalid = |r: Result<(), ChannelError>| matches!(r, Err(ChannelError::InvalidParameter(_)));
        assert!(invalid(write_channels_npy(&path, &[])));
        let a = rayleigh(2, 1, 4, &mut rng).unwrap();
        let b = rayleigh(3, 1, 4, &mut rng).unwrap();
        let c = rayleigh(2, 2, 4, &mut rng).unwrap();
        let d = rayleigh(2, 1, 5, &mut rng).unwrap();
        let mixed = Channel::new(vec![a.blocks()[0].clone(), c.blocks()[0].clone()]).unwrap();
        for bad in [vec![a.clone(), b], vec![a.clone(), c], vec![a, d], vec![mixed]] {
            assert!(invalid(write_channels_npy(&path, &bad)));
        }
        assert!(invalid(write_precoders_npy(&path, &[])));
        assert!(invalid(write_precoders_npy(&path, &[Array2::zeros((0, 2))])));
        assert!(invalid(write_precoders_npy(&path, &[Array2::zeros((2, 2)), Array2::zeros((2, 3))])));
        assert!(invalid(write_precoders_npy(&path, &[array![[c64::new(f64::NAN, 0.0)]]])));
        assert!(!path.exists());
        // A directory that does not exist is an IO error on the temporary file.
        let nowhere = dir.file("no-such-dir").join("w.npy");
        assert!(matches!(write_precoders_npy(&nowhere, &[Array2::zeros((1, 1))]), Err(ChannelError::Io { .. })));
    }

    #[test]
    fn malformed_files_give_typed_errors() {
        let dir = TempDir::new("malformed");

        let missing = dir.file("missing.npy");
        assert!(matches!(read_channels_npy(&missing), Err(ChannelError::Io { path, .. }) if path == missing));
        assert!(matches!(read_precoders_npy(&missing), Err(ChannelError::Io { .. })));

        let real = dir.file("real.npy");
        Array4::<f64>::ones((1, 2, 1, 3)).write_npy(File::create(&real).unwrap()).unwrap();
        assert!(is_format(&read_channels_npy(&real), &real, "complex128"));
        assert!(is_format(&read_precoders_npy(&real), &real, "complex128"));

        let flat = dir.file("flat.npy");
        Array2::<c64>::zeros((2, 3)).write_npy(File::create(&flat).unwrap()).unwrap();
        assert!(is_format(&read_channels_npy(&flat), &flat, "dimensions"));
        assert!(is_format(&read_precoders_npy(&flat), &flat, "dimensions"));

        let five = dir.file("five.npy");
        ArrayD::<c64>::zeros(vec![1, 1, 1, 1, 1]).write_npy(File::create(&five).unwrap()).unwrap();
        assert!(is_format(&read_channels_npy(&five), &five, "dimensions"));
        let four = dir.file("four.npy");
        Array4::<c64>::zeros((1, 1, 1, 1)).write_npy(File::create(&four).unwrap()).unwrap();
        assert!(is_format(&read_precoders_npy(&four), &four, "dimensions"));

        let text = dir.file("text.npy");
        std::fs::write(&text, "this is not a numpy file\n").unwrap();
        assert!(is_format(&read_channels_npy(&text), &text, "not a valid .npy"));
        let empty_file = dir.file("empty-file.npy");
        std::fs::write(&empty_file, b"").unwrap();
        assert!(is_format(&read_channels_npy(&empty_file), &empty_file, "not a valid .npy"));

        let nan = dir.file("nan.npy");
        let mut h = Array3::<c64>::ones((1, 2, 2));
        h[[0, 1, 0]] = c64::new(0.0, f64::NAN);
        h.write_npy(File::create(&nan).unwrap()).unwrap();
        assert!(is_format(&read_channels_npy(&nan), &nan, "non-finite entry at index [0, 1, 0]"));
        assert!(is_format(&read_precoders_npy(&nan), &nan, "non-finite"));

        let empty = dir.file("empty.npy");
        Array4::<c64>::zeros((1, 0, 1, 2)).write_npy(File::create(&empty).unwrap()).unwrap();
        assert!(is_format(&read_channels_npy(&empty), &empty, "zero-size"));
        let no_samples = dir.file("no-samples.npy");
        Array3::<c64>::zeros((0, 2, 2)).write_npy(File::create(&no_samples).unwrap()).unwrap();
        assert!(is_format(&read_precoders_npy(&no_samples), &no_samples, "zero-size"));

        // Truncated data and trailing garbage.
        let truncated = dir.file("truncated.npy");
        write_channels_npy(&truncated, &[rayleigh(1, 1, 4, &mut ChaCha8Rng::seed_from_u64(0)).unwrap()]).unwrap();
        let mut bytes = std::fs::read(&truncated).unwrap();
        bytes.truncate(bytes.len() - 8);
        std::fs::write(&truncated, &bytes).unwrap();
        assert!(is_format(&read_channels_npy(&truncated), &truncated, "data bytes"));
        bytes.extend_from_slice(&[0; 24]);
        std::fs::write(&truncated, &bytes).unwrap();
        assert!(is_format(&read_channels_npy(&truncated), &truncated, "data bytes"));

        // A header claiming an enormous shape must not allocate it.
        let huge = dir.file("huge.npy");
        let header = Header {
            type_descriptor: Header::from_reader(&mut &bytes[..]).unwrap().type_descriptor,
            layout: ndarray_npy::npy::header::Layout::Standard,
            shape: vec![1 << 20, 1 << 20, 1 << 10, 1 << 10],
        };
        let mut file = header.to_bytes().unwrap();
        file.extend_from_slice(&[0; 64]);
        std::fs::write(&huge, &file).unwrap();
        assert!(is_format(&read_channels_npy(&huge), &huge, "data bytes"));
    }
}
