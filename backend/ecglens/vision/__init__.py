"""Images and videos: their distortions at a calibrated PSNR (`distortions`) and how they are read (`io`)."""
