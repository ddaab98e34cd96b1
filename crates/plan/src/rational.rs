//! Frame rates as exact fractions, so frame positions and FFmpeg arguments agree
//! to the frame over hours of timeline (29.97 means 30000/1001 in video).

/// A frame rate of exactly `num / den` frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    /// Frames per `den` seconds, e.g. 30000 for NTSC's 29.97 fps.
    pub num: u64,
    /// Seconds that `num` frames last: 1 for a whole rate, 1001 for an NTSC-style one,
    /// 1000 for any other rate [`FrameRate::from_fps`] makes (the fraction is not reduced).
    /// Never 0 in a usable rate.
    pub den: u64,
}

impl FrameRate {
    /// The nearest conventional fraction: whole rates stay whole, NTSC-style rates
    /// (23.976, 29.97, 59.94) become n*1000/1001, anything else is kept to 1/1000.
    pub fn from_fps(fps: f64) -> FrameRate {
        let whole = fps.round();
        if (fps - whole).abs() < 1e-6 {
            return FrameRate { num: whole as u64, den: 1 };
        }
        let ntsc = (fps * 1.001).round();
        if (fps - ntsc * 1000.0 / 1001.0).abs() < 0.001 {
            return FrameRate { num: ntsc as u64 * 1000, den: 1001 };
        }
        FrameRate { num: (fps * 1000.0).round() as u64, den: 1000 }
    }

    /// The rate as frames per second, `num / den` (29.97002997... for 30000/1001).
    pub fn fps(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Seconds of `frames` frames, exactly as FFmpeg will time them.
    pub fn seconds(self, frames: u64) -> f64 {
        (frames as f64 * self.den as f64) / self.num as f64
    }

    /// The frame nearest to a timeline position.
    pub fn frame_at(self, seconds: f64) -> u64 {
        (seconds * self.num as f64 / self.den as f64).round().max(0.0) as u64
    }

    /// `30` or `30000/1001`, as FFmpeg's `fps` filter and `-r` accept it.
    pub fn as_ffmpeg(self) -> String {
        if self.den == 1 {
            self.num.to_string()
        } else {
            format!("{}/{}", self.num, self.den)
        }
    }

    /// The matching time base, `1/30` or `1001/30000`, for `settb`.
    pub fn time_base(self) -> String {
        format!("{}/{}", self.den, self.num)
    }
}

#[cfg(test)]
mod tests {
    use super::FrameRate;

    #[test]
    fn conventional_rates_become_exact_fractions() {
        assert_eq!(FrameRate::from_fps(30.0), FrameRate { num: 30, den: 1 });
        assert_eq!(FrameRate::from_fps(29.97), FrameRate { num: 30000, den: 1001 });
        assert_eq!(FrameRate::from_fps(23.976), FrameRate { num: 24000, den: 1001 });
        assert_eq!(FrameRate::from_fps(12.5), FrameRate { num: 12500, den: 1000 });
        assert_eq!(FrameRate::from_fps(29.97).frame_at(3600.0), 107_892);
    }

    /// An NTSC-style rate's frames last den/num seconds each: 30000/1001 fps is 29.97...
    /// frames a second, and 30,000 frames last 1,001 s.
    #[test]
    fn a_fractional_rate_times_its_frames_exactly() {
        let ntsc = FrameRate { num: 30_000, den: 1001 };
        assert!((ntsc.fps() - 29.970_029_97).abs() < 1e-8, "{}", ntsc.fps());
        assert_eq!(ntsc.seconds(30_000), 1001.0);
        assert!((ntsc.seconds(3) - 0.1001).abs() < 1e-12, "{}", ntsc.seconds(3));
    }

    /// An NTSC-style rate is n*1000/1001 for any n, not only the usual ones: 999.000999 fps is
    /// 1000000/1001 (its n is the rate times 1.001).
    #[test]
    fn any_ntsc_style_rate_becomes_its_fraction() {
        assert_eq!(FrameRate::from_fps(1_000_000.0 / 1001.0), FrameRate { num: 1_000_000, den: 1001 });
        assert_eq!(FrameRate::from_fps(300_000.0 / 1001.0), FrameRate { num: 300_000, den: 1001 });
    }
}
